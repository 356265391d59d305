#!/usr/bin/env bash
# The GPU figures of the ImageNet-1K scale issue in two prepared device calls (a lent GPU has 15
# minutes in all, its start included, and 10 minutes a call; see the device tool's README).
#
#   bash benchmarks/gpu_session.sh prepare     # HERE, once per checkout: the wheel the device image lacks
#                                              # (zstandard for its Python 3.12) into .whl/ (git ignores it)
#   bash benchmarks/gpu_session.sh rehearse    # HERE, on the CPU: every stage at tiny sizes, through the same
#                                              # paths (the ladd_cli mapping, $OUT, the timeouts); a few minutes
#   device run: command "bash benchmarks/gpu_session.sh label", carry [".whl"], timeout_s 590 (its steps: 550 s at most)
#       label_pass.py (ConvNet-D5 128 px, ResNet-18 224 px with 1000 classes, ConvNet-D3 32 px; bfloat16
#       and float32; the bf16 matmul ceiling), torch_loader.py, then relabel_speed.py (`ladd relabel`
#       against the bare teacher forward: ConvNet-D3 32 px, ConvNet-D5 128 px, ResNet-18 224 px; bfloat16,
#       batches of up to 1,024; about 1 minute): about 5-6 minutes in all
#       (the relabel step alone: command "bash benchmarks/gpu_session.sh relabel", timeout_s 200)
#   device run: command "bash benchmarks/gpu_session.sh scale", carry [".whl"], timeout_s 560
#       scale.py --device cuda --steps device at IPC 10: every one of the 250,000 sub-images labelled,
#       the ResNet-18 student on all of them (streamed: its data wait), the loaders; about 5-7 minutes
#   give the machine back after the second call.
#
# What comes back under $OUT: RESULTS.md with the new sections, each benchmark's JSON (a
# *.partial.json where scale.py or relabel_speed.py was stopped), session.log and gpu.txt. Here: copy the JSON into
# benchmarks/results/, then `python benchmarks/<name>.py --render-only --results-key <key>` writes
# the sections into their pages (the GPU keys: label_pass_gpu, torch_loader_gpu, relabel_speed_gpu, scale_gpu).
#
# Every benchmark runs under `timeout`, so a slow one cannot take the call: what ran is kept.
set -u
cd "$(dirname "$0")/.." || exit 1
stage=${1:-}

setup() {   # $1: the python to use; makes `python -m ladd_cli.main` work without installing the package
    PY=$1
    SITE=${TMPDIR:-/tmp}/ladd-site
    mkdir -p "$SITE"
    if [ "${WHEELS:-1}" = 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
            || { echo "gpu_session: installing .whl/ failed" >&2; exit 1; }
    fi
    ln -sfn "$PWD/cli" "$SITE/ladd_cli"          # pyproject maps the package ladd_cli to the folder cli/
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    "$PY" -c "import zstandard, h5py, torch, torchvision, ladd_format, ladd_cli.main" \
        || { echo "gpu_session: the package does not import (missing wheel? run 'prepare' here)" >&2; exit 1; }
    cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
    RESULTS_ARGS=(--data-dir "$OUT" --results "$OUT/RESULTS.md")
    { date -u; nvidia-smi 2>&1 || echo "no nvidia-smi"; nproc; free -g
      "$PY" -c "import torch, torchvision, h5py, numpy; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'h5py', h5py.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
    } >"$OUT/gpu.txt" 2>&1
}

step() {    # $1: seconds allowed; the rest: the command. Output to the terminal and session.log.
    local limit=$1; shift
    echo "== $(date -u +%T) ($limit s at most): $*" | tee -a "$OUT/session.log"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT/session.log"
    echo "== exit ${PIPESTATUS[0]}" | tee -a "$OUT/session.log"
}

relabel_step() {   # $1: the python; the rest: extra options (--quick in the rehearsal). The GPU configurations
    local py=$1; shift    # (bfloat16) run where CUDA is; the section relabel_speed_gpu of RESULTS/relabel-speed.md
    step 110 "$py" benchmarks/relabel_speed.py --results-key relabel_speed_gpu "$@" "${RESULTS_ARGS[@]}"
}

case "$stage" in
prepare)
    grep -qx '/.whl/' .gitignore || { echo "gpu_session: .gitignore must list /.whl/" >&2; exit 1; }
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl 'zstandard==0.25.0' && ls -l .whl
    ;;
label)
    : "${OUT:?run this on the device machine, where OUT is set (or use: rehearse)}"
    setup python3
    step 200 python3 benchmarks/label_pass.py --results-key label_pass_gpu "${RESULTS_ARGS[@]}"
    step 240 python3 benchmarks/torch_loader.py --results-key torch_loader_gpu "${RESULTS_ARGS[@]}"
    relabel_step python3
    ;;
relabel)
    : "${OUT:?run this on the device machine, where OUT is set (or use: rehearse)}"
    setup python3
    relabel_step python3
    ;;
scale)
    : "${OUT:?run this on the device machine, where OUT is set (or use: rehearse)}"
    setup python3
    step 530 python3 benchmarks/scale.py --device cuda --steps device --whole-evaluate stream --shards 1 \
        --step-timeout 240 --results-key scale_gpu --work /tmp/ladd-scale "${RESULTS_ARGS[@]}"
    ;;
rehearse)
    OUT=$(mktemp -d) && export OUT
    WHEELS=0 setup .venv/bin/python      # the venv has every package; the wheels are the device's Python's
    step 120 .venv/bin/python benchmarks/label_pass.py --quick "${RESULTS_ARGS[@]}"
    step 120 .venv/bin/python benchmarks/torch_loader.py --quick "${RESULTS_ARGS[@]}"
    relabel_step .venv/bin/python --quick
    step 300 .venv/bin/python benchmarks/scale.py --ipc 1 --classes 40 --side 64 --label-images 8 --steps device \
        --whole-evaluate stream --shards 1 --step-timeout 120 --results-key scale_gpu --quick \
        --work "$OUT/work" "${RESULTS_ARGS[@]}"
    rm -rf "$OUT/work"
    echo "rehearsal: $(grep -c '^== exit 0' "$OUT/session.log") of 4 benchmarks exited 0; files in $OUT:"
    ls "$OUT"
    [ "$(grep -c '^== exit 0' "$OUT/session.log")" = 4 ]
    ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh prepare | rehearse | label | relabel | scale  (see the comment at its top)" >&2
    exit 2
    ;;
esac
