"""Planted bugs: put each small, plausible bug of issue 16 into a copy of the repository and count the
tests that fail, and in how many test files.

Usage::

    .venv/bin/python benchmarks/planted_bugs.py                # ~10 minutes on 2 cores; saves
                                                               # results/planted_bugs.json and writes the
                                                               # section of RESULTS/planted-bugs.md
    .venv/bin/python benchmarks/planted_bugs.py --only NAME    # one bug; prints only
    .venv/bin/python benchmarks/planted_bugs.py --render-only

Each bug is one textual edit of one source file (the edit must apply exactly once, so a bug that no
longer matches the code is reported, not skipped silently). The copy is made with ``git ls-files``
(what a clone has) into a temporary folder; the tests run there with ``python -m pytest`` from the
copy's root, so ``import ladd_format`` imports the copy. The target: every bug fails at least two
tests in at least two different files.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Output, add_output_args  # noqa: E402

NAME = KEY = "planted_bugs"
TITLE = "## Planted bugs: how many tests each one fails"

SELF_CHECK = "tests/test_benchmarks_data.py::test_planted_bugs_edits_apply_once_and_render"

# (name, what, file, old text, new text)
BUGS = [
    ("verify-no-image-chunk-rule", "verify no longer checks the /images chunk shape (rule 4)",
     "ladd_format/verify.py", "if ds.chunks is not None and ds.chunks != (1, k, h, w):", "if False:"),
    ("verify-no-temperature-rule", "verify no longer checks temperature > 0 (rule 8)",
     "ladd_format/verify.py", "if not (math.isfinite(t) and t > 0):", "if False:"),
    ("verify-no-soft-shape-rule", "verify no longer checks the /soft_labels shape (rule 6)",
     "ladd_format/verify.py", "and ds.shape != (m, num_classes):", "and False:"),
    ("uint8-rounds-down", "float -> uint8 rounds down instead of to nearest (fast path and reference)",
     "ladd_format/pixels.py", "    return (x + 0.5) // 1", "    return x // 1"),
    ("uint8-fast-path-rounds-down", "float -> uint8 fast path rounds down",
     "ladd_format/pixels.py", "            q += 0.5\n            np.floor(q, out=q)", "            np.floor(q, out=q)"),
    ("uint8-half-to-even", "float -> uint8 rounds half to even (numpy's round)",
     "ladd_format/pixels.py", "    return (x + 0.5) // 1", "    return x.round() if hasattr(x, 'round') else x"),
    ("subimages-top-left-swapped", "subimages() crops at (left, top) instead of (top, left)",
     "ladd_format/torch/subimages.py",
     "crops = torch.stack([images[:, :, int(box_array[j, 0]):int(box_array[j, 0]) + h,\n"
     "                                    int(box_array[j, 1]):int(box_array[j, 1]) + w] for j in members], dim=1)",
     "crops = torch.stack([images[:, :, int(box_array[j, 1]):int(box_array[j, 1]) + h,\n"
     "                                    int(box_array[j, 0]):int(box_array[j, 0]) + w] for j in members], dim=1)"),
    ("subimages-output-hw-swapped", "subimages() resizes to (W, H) instead of (H, W)",
     "ladd_format/torch/subimages.py",
     "out_h, out_w = (height, width) if size is None else (int(size[0]), int(size[1]))",
     "out_h, out_w = (width, height) if size is None else (int(size[1]), int(size[0]))"),
    ("loss-mean-sums", "ladd_loss(reduction='mean') sums the local term",
     "ladd_format/torch/loss.py",
     'local_term = per_sub.sum(dim=1).mean() if reduction == "sum" else per_sub.mean()',
     "local_term = per_sub.sum(dim=1).mean()"),
    ("uint8-codec-half-to-even", "the uint8 codec rounds half to even",
     "ladd_format/codecs/base.py",
     "return np.floor(np.clip(values, 0.0, 1.0).astype(np.float64) * 255.0 + 0.5).astype(np.uint8)",
     "return np.round(np.clip(values, 0.0, 1.0).astype(np.float64) * 255.0).astype(np.uint8)"),
    ("batched-logits-no-softmax", "DLADataset.batch()/targets() (evaluate --mode soft) skip the softmax of logit "
     "soft labels", "ladd_format/torch/dataset.py",
     'soft = torch.softmax(soft, -1) if self.soft_kind == "logits" else soft', "soft = soft"),
]

FAILED = re.compile(r"^FAILED (tests/[^:]+)::(\S+)", re.M)


def copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_bug(bug, work: Path) -> dict:
    name, what, path, old, new = bug
    target = work / path
    original = target.read_text()
    count = original.count(old)
    if count != 1:
        return {"name": name, "what": what, "file": path, "error": f"the edit matches {count} times"}
    target.write_text(original.replace(old, new))
    try:
        # the test that checks each bug's edit still matches the source fails in the planted copy by
        # construction (the edit is applied there), so it is no evidence of catching the bug
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "tests",
                               "-k", "not cuda", "--deselect", SELF_CHECK], cwd=work, capture_output=True, text=True)
    finally:
        target.write_text(original)
    failed = sorted(set(FAILED.findall(proc.stdout)))
    return {"name": name, "what": what, "file": path, "failed": [f"{f}::{t}" for f, t in failed],
            "files": sorted({f for f, _ in failed}), "exit": proc.returncode}


def measure(only: str | None) -> dict:
    bugs = [b for b in BUGS if only is None or b[0] == only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy_repo(work)
        for bug in bugs:
            row = run_bug(bug, work)
            rows.append(row)
            print(f"{row['name']}: {len(row.get('failed', []))} failed in {len(row.get('files', []))} file(s)"
                  f"{' ' + row['error'] if 'error' in row else ''}", file=sys.stderr)
    return {"rows": rows}


def render(payload: dict) -> str:
    rows = payload["data"]["rows"]
    lines = [f"- Machine: {payload['machine']}",
             f"- Date: {payload['date']}; command: `{payload['command']}` (re-render with "
             "`python benchmarks/planted_bugs.py --render-only`)",
             "- Method: each bug is one edit of one file in a copy of the repository (`git ls-files`); the whole "
             "suite runs on the copy. Target: every bug fails at least 2 tests in at least 2 files.",
             "",
             "| bug | file | failing tests | test files | target met |",
             "|---|---|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['what']} | `{r['file']}` | - | - | edit not applied: {r['error']} |")
            continue
        ok = len(r["failed"]) >= 2 and len(r["files"]) >= 2
        lines.append(f"| {r['what']}{' (re-measured)' if r.get('remeasured') else ''} | `{r['file']}` | "
                     f"{len(r['failed'])} | {len(r['files'])} "
                     f"({', '.join(Path(f).stem for f in r['files'][:6])}{', ...' if len(r['files']) > 6 else ''}) | "
                     f"{'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="one bug by name; prints only")
    ap.add_argument("--update", default=None, metavar="NAME",
                    help="re-measure one bug and replace its row in the saved results (after a test was added), "
                         "or add it when it is new")
    add_output_args(ap)
    args = ap.parse_args(argv)
    args.quick = args.only is not None
    out = Output.from_args(args)
    if args.update:
        payload = out.load(NAME)
        (row,) = measure(args.update)["rows"]
        row["remeasured"] = True
        rows = [row if r["name"] == args.update else r for r in payload["data"]["rows"]]
        if not any(r["name"] == args.update for r in payload["data"]["rows"]):
            rows.append(row)                       # a bug added to BUGS since the results were saved
        payload = out.save(NAME, {"rows": rows}, command=payload["command"] + f"; then --update {args.update}")
        return out.publish(KEY, TITLE, render, payload=payload)
    return out.publish(KEY, TITLE, render, lambda: measure(args.only))


if __name__ == "__main__":
    raise SystemExit(main())
