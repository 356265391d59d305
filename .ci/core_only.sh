#!/usr/bin/env bash
# CI: `pip install ladd-format` without extras. In a fresh venv, the core installs (non-editable, no
# extras) without torch; the torch-free commands run on a spec vector and on an npz converted here;
# each command that needs torch fails with one line naming the extra to install.
# Needs python3 (or $PYTHON), git and the package registries. Writes nothing into the repository.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { echo "core-only: $*"; }
fail() { echo "core-only: FAILED: $*" >&2; exit 1; }

# The build reads a copy of the working tree's files (tracked and untracked, not ignored): an in-place
# build would write build/ into the repository and ship whatever stale modules build/lib still holds.
say "copying the source"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
    "$PYTHON" -c 'import shutil, sys
from pathlib import Path
repo, dest = Path(sys.argv[1]), Path(sys.argv[2])
for name in filter(None, sys.stdin.buffer.read().decode().split("\0")):
    if (repo / name).is_file():                      # a file moved away in the working tree is skipped
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, dest / name)' "$repo" "$work/src"

say "pip install . (the core, no extras) into a fresh venv"
"$PYTHON" -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/pip" install --quiet "$work/src"
rm -rf "$work/src"

cd "$work"                                           # nothing of the repository on sys.path
"$bin/python" - <<'EOF' || fail "the core install is not torch-free or not the installed copy"
import importlib.util, sys, sysconfig
from pathlib import Path

present = [m for m in ("torch", "torchvision", "safetensors", "sklearn") if importlib.util.find_spec(m)]
if present:
    sys.exit(f"importable without the torch extra: {', '.join(present)}")
import ladd_format, ladd_cli
site = Path(sysconfig.get_paths()["purelib"]).resolve()
for module in (ladd_format, ladd_cli):
    if site not in Path(module.__file__).resolve().parents:
        sys.exit(f"{module.__name__} comes from {module.__file__}, not from {site}")
EOF
say "torch, torchvision, safetensors and sklearn are not importable; ladd_format is the installed copy"

ladd="$bin/ladd"
vector="$repo/spec/vectors/uint8.dla.h5"
run() { say "ladd $*"; "$ladd" "$@" >"$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; fail "ladd $*"; }; }

run --help
run info "$vector"
run verify "$vector"
run size "$vector"
run upgrade "$repo/spec/vectors/legacy_1_0.dla.h5" -o "$work/upgraded.dla.h5"
run verify "$work/upgraded.dla.h5"

"$bin/python" -c '
import numpy as np
rng = np.random.default_rng(0)
np.savez("small.npz", images=rng.integers(0, 256, (12, 3, 8, 8), dtype=np.uint8),
         labels=np.arange(12) % 3, num_classes=3)'
run convert npz small.npz -o small.dla.h5
run verify small.dla.h5
run info small.dla.h5
run export small.dla.h5 --format npz -o exported.npz
run convert npz exported.npz -o again.dla.h5
run verify again.dla.h5
run export small.dla.h5 --format folder -o exported
run convert folder exported -o folder.dla.h5
run verify folder.dla.h5
run show small.dla.h5 -o small.png                   # a plain set: images per class
test -s small.png || fail "ladd show wrote no picture"
run show "$vector" --index 1 -o vector.png          # dense labels: sub-images, drawn with Pillow
grep -qF "(sub-images," "$work/out.txt" || { cat "$work/out.txt" >&2; fail "ladd show drew no sub-images"; }
test -s vector.png || fail "ladd show wrote no sub-image picture"

# Commands that need torch: exit non-zero with exactly one line that names the extra, no traceback.
: > labeler.safetensors                              # an existing path, so that only torch is missing
needs_torch() {
    say "ladd $* (needs the torch extra)"
    local rc=0
    "$ladd" "$@" >"$work/out.txt" 2>&1 || rc=$?
    local lines
    lines="$(grep -c '' "$work/out.txt" || true)"
    if [ "$rc" -eq 0 ] || [ "$lines" -ne 1 ] || ! grep -qF "ladd-format[torch]" "$work/out.txt" ||
            grep -q Traceback "$work/out.txt"; then
        cat "$work/out.txt" >&2
        fail "ladd $*: exit $rc, $lines line(s); want a non-zero exit and one line naming 'ladd-format[torch]'"
    fi
    sed 's/^/    /' "$work/out.txt"
}
needs_torch augment small.dla.h5 --labeler labeler.safetensors -o augmented.dla.h5
needs_torch evaluate small.dla.h5 --test digits
needs_torch train-labeler digits -o labeler-out
needs_torch demo --workdir demo-out
needs_torch export small.dla.h5 --format ddranking -o ddranking-out
for leftover in augmented.dla.h5 ddranking-out; do
    [ ! -e "$leftover" ] || fail "a command that needs torch left $leftover behind"
done
say "all passed"
