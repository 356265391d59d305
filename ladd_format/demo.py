"""The main job on an embedded default (``ladd demo`` / ``make demo``).

Real data, no download: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes,
fixed 80/20 train/test split), upsampled to 32x32 RGB.

1. A labeler g: ConvNet-D3 trained briefly on the training split with SGD on whole images, keeping
   the early checkpoint as the paper does (``ladd train-labeler``). Training it on crops down to R
   labels the sub-images more often "correctly" but gave worse students (benchmarks/RESULTS.md).
2. Distilled sets D: ``ipc`` random real training images per class (the strong baseline of
   "A Label is Worth a Thousand Images"), and the same draw plus one image per class (IPC+1, the
   paper's fair-storage baseline++), written as plain D files.
3. The labeler pass (``ladd augment``): N x N = 5 x 5 sub-images per image, R = 62.5%, one D_LA
   per codec; each is verified (``ladd verify``) and measured (``ladd size``).
4. Students (``ladd evaluate``): hard labels on D, Eq. 5 on the D_LA, hard labels on IPC+1; test
   accuracy mean +- std over seeds on the held-out split, with each file's zip size.
5. ``report.md``, ``report.png`` and ``report.json`` in the work folder.

The work folder (``--workdir``, default ``demo-out``) is the demo's own: a folder that does not
exist or is empty is taken and marked with a :data:`MARKER` file; a folder with that marker (an
earlier demo's: a second ``make demo`` simply runs again) has the demo's files in it replaced; any
other non-empty folder is refused before any work unless ``force`` (``--force``), since the demo
would replace files of the names it writes. (A folder of a version that wrote no marker is
recognised by its ``report.json``.) A run interrupted or failing in a folder it created removes
the files it wrote there and the folder (:func:`remove_demo_files`); in an earlier demo's folder
the files written so far stay.

The labeler's training and each row's students report their progress on stderr
(:mod:`ladd_format.progress`: a bar in a terminal, a plain line every few seconds in a log).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import atomic
from .codecs import parse_codec
from .errors import InputError, OutputExistsError
from .labeler import AugmentConfig, Source, TrainConfig, augment, load_source, train_labeler
from .labeler.train import missing_folders, remove_if_empty
from .progress import Progress
from .reader import open_dla
from .size import measure_file
from .train.accuracy import accuracy_table, accuracy_text
from .train.evaluate import EvalConfig, evaluate
from .train.pool import StudentJob, available_cores, default_workers, run_students
from .verify import verify
from .version import __version__
from .writer import DLAWriter

log = logging.getLogger(__name__)

#: the labeler pass's grid N and ratio R: ``ladd augment``'s defaults (the paper's 5 and 62.5%)
N, RATIO = AugmentConfig().n, AugmentConfig().ratio
SIDE = 32                    #: image side of the demo's digits, pixels
# codec text values (ladd augment --codec); the last keeps the top 3 classes with uint8 values
CODECS = ("float32", "float16", "uint8", "topk:k=3,values=uint8")
STUDENT_CODEC = "uint8"      # the spec's recommended codec for C = 10 (section 6)


def codec_label(codec) -> str:
    """The codec's short label for file names and tables, e.g. ``uint8`` or ``topk3-uint8``."""
    return parse_codec(codec).label()


@dataclass
class DemoSettings:
    """Everything the demo chooses; written into the report."""

    ipcs: tuple[int, ...] = (1, 5)
    seeds: int = 3
    seed: int = 0
    labeler_width: int = 32
    labeler_epochs: int = 20
    labeler_min_crop: float = 1.0      # no crops: measured better for students (benchmarks/RESULTS.md)
    student: EvalConfig = field(default_factory=lambda: EvalConfig(
        arch="convnet-d3", arch_kwargs={"width": 32}, epochs=200, lr=0.01, batch_size=256, seeds=3,
        sub_per_image=4, reduction="mean", device="auto", threads=1))
    codecs: tuple = CODECS

    def __post_init__(self):
        self.student = replace(self.student, seeds=self.seeds)


def quick_settings(**overrides) -> DemoSettings:
    """The smoke-test profile (`--quick`): tiny labeler, short students, one seed."""
    base = DemoSettings(ipcs=(1,), seeds=1, labeler_width=16, labeler_epochs=3,
                        student=EvalConfig(arch="convnet-d3", arch_kwargs={"width": 16}, epochs=20,
                                           sub_per_image=4, reduction="mean", device="auto", threads=1))
    return replace(base, **overrides)


#: the file that marks a folder as a demo's work folder (module docstring)
MARKER = ".ladd-demo"
#: the names the demo writes in its work folder (shell patterns; hidden ones: a labeler pass's work
#: folder and the temporary siblings of unfinished files)
DEMO_NAMES = (MARKER, "labeler", "digits_ipc*.dla.h5", ".digits_ipc*", "report.json", "report.md", "report.png",
              ".report.*")


def is_demo_folder(workdir: Path) -> bool:
    """True for a folder an earlier ``ladd demo`` wrote: it holds :data:`MARKER`, or (a version
    that wrote no marker) a ``report.json`` with the demo's ``settings`` and ``rows``."""
    if os.path.lexists(workdir / MARKER):
        return True
    try:
        report = json.loads((workdir / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"settings", "rows"} <= set(report)


def check_workdir(workdir: str | os.PathLike, force: bool = False) -> Path:
    """Refuse (before any work) a work folder the demo may not write into: a path that is not a
    folder, or a non-empty folder that is not an earlier demo's (:func:`is_demo_folder`) unless
    ``force`` (``--force``)."""
    workdir = Path(workdir)
    if os.path.lexists(workdir) and not workdir.is_dir():
        raise InputError("is not a folder; the demo writes its files into a folder", workdir)
    if workdir.is_dir() and not force and any(workdir.iterdir()) and not is_demo_folder(workdir):
        raise OutputExistsError(f"holds files `ladd demo` did not write (no {MARKER} marker); pass --force to write "
                                "the demo's files into it (files of the same names are replaced), or choose another "
                                "--workdir", workdir)
    return workdir


def remove_demo_files(workdir: Path) -> None:
    """Remove what a demo wrote in ``workdir`` (the entries matching :data:`DEMO_NAMES`; a symbolic
    link is removed, never followed); anything else is left."""
    try:
        entries = [entry.name for entry in os.scandir(workdir)]
    except OSError:
        return
    for name in entries:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in DEMO_NAMES):
            atomic.remove_entry(workdir / name)


def random_real(train: Source, ipc: int, seed: int) -> np.ndarray:
    """Indices of ``ipc`` random training images per class; a larger ``ipc`` extends the same draw."""
    rng = np.random.default_rng(seed)
    order = [rng.permutation(np.flatnonzero(train.labels == c)) for c in range(train.num_classes)]
    return np.concatenate([o[:ipc] for o in order])


def write_plain_set(path: Path, train: Source, idx: np.ndarray, ipc: int) -> Path:
    mean = train.images.astype(np.float64).mean(axis=(0, 2, 3)) / 255
    std = train.images.astype(np.float64).std(axis=(0, 2, 3)) / 255
    with DLAWriter(path, num_classes=train.num_classes, image_shape=train.images.shape[1:], mean=mean, std=std,
                   class_names=train.class_names, source_dataset=train.dataset, distillation="random-real",
                   ipc=ipc, converter="demo", overwrite=True) as w:
        w.append(train.images[idx], train.labels[idx])
    return path


def train_demo_labeler(train: Source, out: Path, settings: DemoSettings, device: str = "auto",
                       show_progress: bool = True) -> dict:
    config = TrainConfig(arch="convnet-d3", arch_kwargs={"width": settings.labeler_width},
                         epochs=settings.labeler_epochs, save_epochs=(settings.labeler_epochs,), batch_size=256,
                         min_crop=settings.labeler_min_crop, device=device, seed=settings.seed)
    with Progress("demo labeler", config.epochs, "epochs", disable=not show_progress) as bar:
        def on_step(epoch, step, steps):
            if step < steps:                   # an epoch's end comes with its loss (on_epoch)
                bar.set(epoch - 1 + step / steps)

        def on_epoch(epoch, total, metrics):
            bar.set(epoch, postfix=f"epoch {epoch} loss {metrics['loss']:.3f}")
        return train_labeler(train, out, config, overwrite=True, progress=on_epoch, step_progress=on_step)[-1]


def label_augment(plain: Path, checkpoint: str, out: Path, codec: str = "float32") -> Path:
    augment(plain, checkpoint, out, AugmentConfig(n=N, ratio=RATIO, codec=codec, overwrite=True))
    problems = verify(out)
    if problems:
        raise RuntimeError(f"the demo produced an invalid file: {problems[0]}")
    return out


def student_row(method: str, ipc: int, path: Path, base_bytes: int, test: Source, config: EvalConfig,
                progress: Callable[[str], None] | None = None, show_progress: bool = True) -> dict:
    """Train ``config.seeds`` students on ``path``; the row of the demo table (``progress(line)``
    gets the row's line; ``show_progress``: the students' progress on stderr)."""
    start = time.perf_counter()
    with Progress(f"demo students {method} IPC {ipc}", config.seeds * config.epochs, "epochs",
                  disable=not show_progress) as bar:
        result = evaluate(path, test, config,
                          epoch_progress=lambda done, total, loss: bar.set(done, postfix=f"loss {loss:.3f}"))
    size = measure_file(path, "zip")
    row = {"method": method, "ipc": ipc, "file": path.name, "mode": config.mode,
           "accuracies": result["accuracies"], "mean": result["mean"], "std": result["std"],
           "bytes": size.dla_bytes, "extra_pct": 100.0 * (size.dla_bytes - base_bytes) / base_bytes,
           "seconds": time.perf_counter() - start}
    if progress is not None:
        progress(f"      {method:<11} IPC {ipc:<3} "
                 f"{accuracy_text(row['mean'], row['std'], len(row['accuracies']), 1, (5, 4))}  ({row['seconds']:.0f} s)")
    return row


def student_rows(specs: list[tuple], test: Source, config: EvalConfig, workers: int,
                 progress: Callable[[str], None] | None = None, show_progress: bool = True) -> list[dict]:
    """The rows of the demo table: ``specs`` of (method, ipc, file, mode, base bytes), each trained
    with ``config.seeds`` students; all the students run in ``workers`` processes
    (:mod:`ladd_format.train.pool`), and a row's line goes to ``progress`` when its last student is tested."""
    jobs = [StudentJob((r, seed), str(path), replace(config, mode=mode, seeds=1), seed)
            for r, (_, _, path, mode, _) in enumerate(specs) for seed in range(config.seeds)]
    start = time.perf_counter()
    accs: dict[int, dict[int, float]] = {r: {} for r in range(len(specs))}
    rows: dict[int, dict] = {}
    epochs_done: dict = {}
    with Progress("demo students", len(jobs) * config.epochs, "epochs", disable=not show_progress) as bar:
        def on_epoch(key, epoch, loss):
            epochs_done[key] = epoch
            bar.set(sum(epochs_done.values()))

        def on_done(key, acc):
            r, seed = key
            accs[r][seed] = acc
            if len(accs[r]) < config.seeds:
                return
            method, ipc, path, mode, base = specs[r]
            values = [accs[r][s] for s in range(config.seeds)]
            size = measure_file(path, "zip")
            rows[r] = {"method": method, "ipc": ipc, "file": Path(path).name, "mode": mode, "accuracies": values,
                       "mean": float(np.mean(values)), "std": float(np.std(values)), "bytes": size.dla_bytes,
                       "extra_pct": 100.0 * (size.dla_bytes - base) / base,
                       "seconds": time.perf_counter() - start,
                       "command": evaluate_command(Path(path), "digits-test", replace(config, mode=mode))}
            if progress is not None:
                progress(f"      {method:<11} IPC {ipc:<3} "
                         f"{accuracy_text(rows[r]['mean'], rows[r]['std'], config.seeds, 1, (5, 4))}  "
                         f"(done at {rows[r]['seconds']:.0f} s)")
        run_students(jobs, test, workers, on_epoch, on_done, threads=config.threads)
    return [rows[r] for r in range(len(specs))]


def evaluate_command(path: Path, test: str, config: EvalConfig) -> str:
    """The ``ladd evaluate`` line that reproduces a row of the table."""
    parts = [f"ladd evaluate {path} --test {test} --arch {config.arch}"]
    if config.arch_kwargs and "width" in config.arch_kwargs:
        parts.append(f"--width {config.arch_kwargs['width']}")
    parts.append(f"--mode {config.mode} --epochs {config.epochs} --lr {config.lr} --batch-size {config.batch_size} "
                 f"--seeds {config.seeds}")
    if config.mode == "ladd":
        if config.sub_per_image:
            parts.append(f"--sub-per-image {config.sub_per_image}")
        parts.append(f"--reduction {config.reduction}")
    if config.threads:
        parts.append(f"--threads {config.threads}")
    return " ".join(parts)


def run_demo(workdir: Path, settings: DemoSettings | None = None, echo: Callable[[str], None] = print,
             show_progress: bool = True, force: bool = False) -> dict:
    """Run the demo in ``workdir`` (module docstring: which folders it takes; ``force`` writes into
    any folder) and return its report."""
    settings = settings or DemoSettings()
    workdir = check_workdir(workdir, force)
    created = missing_folders(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with atomic.replace_file(workdir / MARKER, overwrite=True) as tmp:
            tmp.write_text(f"a work folder of `ladd demo` (ladd-format {__version__}); a new run replaces the demo's "
                           "files here\n")
        return _run(workdir, settings, echo, show_progress)
    except BaseException:
        if created:                       # a folder this run made: nothing of it is left
            remove_demo_files(workdir)
            remove_if_empty(created)
        raise


def _run(workdir: Path, settings: DemoSettings, echo: Callable[[str], None], show_progress: bool) -> dict:
    """:func:`run_demo`'s work, in a work folder that is checked and marked."""
    started = time.perf_counter()
    train, test = load_source("digits", SIDE), load_source("digits-test", SIDE)

    record = train_demo_labeler(train, workdir / "labeler", settings, settings.student.device, show_progress)
    crops = (f" with random crops down to {settings.labeler_min_crop:.1%} of each side"
             if settings.labeler_min_crop < 1 else "")
    echo(f"[1/5] labeler: ConvNet-D3 (width {settings.labeler_width}) trained {settings.labeler_epochs} epochs{crops} "
         f"on {train.description}: validation accuracy {record['val_accuracy']:.3f} -> {Path(record['path']).name}")

    plain: dict[int, Path] = {}
    for ipc in sorted({k for i in settings.ipcs for k in (i, i + 1)}):
        plain[ipc] = write_plain_set(workdir / f"digits_ipc{ipc}_D.dla.h5", train,
                                     random_real(train, ipc, settings.seed), ipc)
    echo(f"[2/5] distilled sets D: random real training images at IPC {', '.join(map(str, sorted(plain)))} "
         f"(IPC+1 = baseline++), 3x{SIDE}x{SIDE} uint8")

    files: dict[int, dict[str, Path]] = {}
    for ipc in settings.ipcs:
        files[ipc] = {}
        for codec in settings.codecs:
            name = codec_label(codec)
            files[ipc][name] = label_augment(plain[ipc], record["path"], workdir / f"digits_ipc{ipc}_{name}.dla.h5",
                                             codec)
    first = settings.ipcs[0]
    with open_dla(files[first][STUDENT_CODEC]) as f:
        centre = float((f.dense()[:, N * N // 2].argmax(-1) == f.labels()).mean())
    echo(f"[3/5] labeler pass: {N}x{N} sub-images of {round(RATIO * SIDE)}x{round(RATIO * SIDE)} px per image, "
         f"{len(settings.codecs)} codecs x IPC {', '.join(map(str, settings.ipcs))}; every file verified "
         f"(centre sub-image top-1 = hard label on {centre:.0%} of the IPC {first} images)")

    echo("[4/5] storage (spec section 7; zip = the paper's measure; +1 image/class: the real IPC+1 file "
         "baseline++ trains on):")
    echo(f"      {'file':<34} {'base D':>9} {'D_LA':>9} {'overhead':>9} {'+1 image/class':>15}")
    sizes = {}
    for ipc in settings.ipcs:
        plus_one = measure_file(plain[ipc + 1], "zip").dla_bytes
        for name, path in files[ipc].items():
            r = measure_file(path, "zip")
            sizes[path.name] = r.as_dict()
            echo(f"      {path.name:<34} {r.base_bytes:>9,} {r.dla_bytes:>9,} {r.overhead_pct:>8.2f}% "
                 f"{100.0 * (plus_one - r.base_bytes) / r.base_bytes:>14.2f}%")

    config = settings.student
    specs = []
    for ipc in settings.ipcs:
        base = measure_file(plain[ipc], "zip").dla_bytes
        specs += [("hard", ipc, plain[ipc], "hard", base), ("LADD", ipc, files[ipc][STUDENT_CODEC], "ladd", base),
                  ("baseline++", ipc, plain[ipc + 1], "hard", base)]
    workers = default_workers(config.device, len(specs) * config.seeds)
    if workers == 1 and config.threads == 1:          # no pool (few students, or a GPU): use every core
        config = replace(config, threads=available_cores())
    echo(f"[5/5] students: {config.arch} (width {(config.arch_kwargs or {}).get('width', 128)}), {config.epochs} "
         f"epochs, {config.seeds} seed(s), tested on {test.description}; {len(specs) * config.seeds} students in "
         f"{workers} process(es) of {config.threads or 'auto'} thread(s):")
    rows = student_rows(specs, test, config, workers, echo, show_progress)

    echo("")
    for line in accuracy_table(rows, N):
        echo(line)
    result = {"settings": settings_dict(settings), "labeler": record, "train": train.description,
              "test": test.description,
              "files": {str(ipc): {k: str(v) for k, v in d.items()} for ipc, d in files.items()},
              "sizes": sizes, "rows": rows, "centre_top1": centre,
              "seconds": time.perf_counter() - started}
    from .viz.demo_figures import write_results  # PIL drawing: only when the results page is written
    written = write_results(workdir, result, files[first][STUDENT_CODEC])
    echo(f"\nwrote {', '.join(str(p) for p in written)} ({result['seconds']:.0f} s in all)")
    return result


def settings_dict(settings: DemoSettings) -> dict:
    d = asdict(settings)
    d["codecs"] = [codec_label(c) for c in settings.codecs]
    return d


__all__ = ["MARKER", "DemoSettings", "check_workdir", "quick_settings", "run_demo"]
