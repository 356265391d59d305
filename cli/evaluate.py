"""``ladd evaluate``: train fresh students on a file and report their test accuracy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ladd_format import LaddError, open_dla
from ladd_format.atomic import require_regular_file
from ladd_format.extras import require
from ladd_format.spec.limits import MAX_IMAGE_SIDE
from ladd_format.spec.names import IMAGES_PATH

from .common import allow_mismatch_option, bounded, fail_cleanly


def _arch_kwargs(width: int | None, arch_options: tuple[str, ...]) -> dict[str, int]:
    """The architecture's keywords: ``--width`` and each ``--arch-option KEY=VALUE`` (0..MAX_ARCH_INT)."""
    from ladd_format.labeler.checkpoint import MAX_ARCH_INT
    bounded("--width", width, 1, MAX_ARCH_INT)
    kwargs = {"width": width} if width else {}
    for option in arch_options:
        key, _, value = option.partition("=")
        try:
            kwargs[key.strip()] = int(value)
        except ValueError:
            raise click.BadParameter(f"expected KEY=INTEGER, got {option!r}", param_hint="--arch-option") from None
        if not 0 <= kwargs[key.strip()] <= MAX_ARCH_INT:
            raise click.BadParameter(f"values must lie in 0..{MAX_ARCH_INT}, got {option!r}",
                                     param_hint="--arch-option")
    return kwargs


@click.command(name="evaluate")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--test", "test_source", required=True,
              help="Test data: an .npz (images, labels), an ImageFolder, digits-test (scikit-learn digits' "
                   "held-out split, rendered at FILE's size), or a .dla.h5 file (read a batch at a time: a test set "
                   "of any size). It must match FILE's channels, image size and classes.")
@click.option("--resize-test", is_flag=True,
              help="Resize test images of another size to FILE's (bilinear, antialiased) instead of refusing them.")
@click.option("--arch", default="convnet-d3", show_default=True)
@click.option("--width", type=int, default=None,
              help="Architecture width (ConvNet default 128).")
@click.option("--arch-option", "arch_options", multiple=True, metavar="KEY=VALUE",
              help="Further integer keyword of the architecture, e.g. depth=4 for vit-cifar (repeatable).")
@click.option("--mode", type=click.Choice(["hard", "soft", "ladd"]), default="ladd", show_default=True)
@click.option("--epochs", type=int, default=300, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--flip", is_flag=True, help="Random horizontal flips in the augmentation.")
@click.option("--sub-per-image", type=int, default=None,
              help="ladd mode: use K random sub-images per step (their terms averaged; with --reduction sum, "
                   "summed and scaled by N*N/K).")
@click.option("--micro-batch", type=int, default=None,
              help="Images per forward/backward; each batch's gradients are accumulated over its micro-batches "
                   "(the memory of a step then grows with this, not --batch-size: at 224 px a ResNet-18 LADD "
                   "step holds 26 views per image). BatchNorm sees micro-batches. Default: the whole batch.")
@click.option("--sub-chunk", type=int, default=None,
              help="ladd mode: images and sub-images per forward pass of the loss, each pass run again in the "
                   "backward pass instead of held (same gradients, a second forward pass). Default: as many "
                   "as fit the loss's memory budget (ladd_format.torch.loss; no chunks for a BatchNorm student); "
                   "0: all at once.")
@click.option("--stream/--in-memory", default=None,
              help="--stream: read each batch from FILE while the previous one trains, holding two batches; "
                   "--in-memory: hold the whole set as stored (uint8 images, encoded dense labels). Either way "
                   "the students are the same, and each row's digest is checked as it is read. Default: held when "
                   "the set takes at most 1 GiB as stored, streamed above (a note on stderr says so).")
@click.option("--reduction", type=click.Choice(["sum", "mean"]), default="mean", show_default=True,
              help="ladd mode: average the local term over the sub-images (the default), or sum it as Eq. 5 does "
                   "literally (docs/cli.md compares the two).")
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", type=int, default=None,
              help="CPU: train the seeds in this many processes at once (default: one per core, at most one "
                   "per seed, when the rounds keep 80% of them busy: 2 for 2, 4 or 5 seeds on 2 cores, 1 "
                   "process with every core's threads for 3; 1 on a GPU).")
@click.option("--threads", type=int, default=None,
              help="CPU: torch threads per student (default: the cores shared among the workers). A seed gives "
                   "the same accuracy for the same thread count, whatever --workers.")
@click.option("--json", "as_json", is_flag=True)
@allow_mismatch_option
@fail_cleanly
def command(file, test_source, resize_test, arch, width, arch_options, mode, epochs, lr, batch_size, seeds, flip,
            sub_per_image, micro_batch, sub_chunk, stream, reduction, device, workers, threads, as_json,
            allow_mismatch):
    """Train fresh students on FILE and report their test accuracy (mean +- std over seeds)."""
    require("torch", "ladd evaluate")
    from ladd_format.progress import Progress
    from ladd_format.train.accuracy import accuracy_text
    from ladd_format.train.evaluate import (HOLD_LIMIT_BYTES, EvalConfig, RunEstimate, check_test_fits, evaluate,
                                            load_test_source, streams)
    from ladd_format.train.pool import default_workers
    arch_kwargs = _arch_kwargs(width, arch_options)
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--seeds", seeds),
                        ("--sub-per-image", sub_per_image), ("--micro-batch", micro_batch)):
        bounded(flag, value, 1)
    bounded("--workers", workers, 1, 256)
    bounded("--threads", threads, 1, 1024)
    bounded("--sub-chunk", sub_chunk, 0)
    with open_dla(require_regular_file(file)) as f:
        shape, num_classes, class_names = f.image_shape, f.num_classes, f.class_names
        dataset = f.attrs.get("source_dataset")
    if max(shape[1:]) > MAX_IMAGE_SIDE and (resize_test or test_source == "digits-test"):
        raise LaddError(f"images are {shape[1]}x{shape[2]}; test images are made that size, at most "
                        f"{MAX_IMAGE_SIDE} a side", file, IMAGES_PATH)
    test = load_test_source(test_source, shape, resize=resize_test)
    try:                                                     # before any training
        mismatch = check_test_fits(test, shape, num_classes, class_names=class_names,
                                   dataset=dataset if isinstance(dataset, str) else None, allow_mismatch=allow_mismatch)
    except LaddError as exc:
        raise type(exc)(exc.message, exc.path or file, exc.where) from None
    if mismatch is not None:
        click.echo(f"ladd: warning: {file}: {mismatch}; testing anyway (--allow-mismatch)", err=True)
    config = EvalConfig(arch=arch, arch_kwargs=arch_kwargs or None, mode=mode, epochs=epochs,
                        lr=lr, batch_size=batch_size, seeds=seeds, device=device, flip=flip,
                        sub_per_image=sub_per_image, reduction=reduction, threads=threads, micro_batch=micro_batch,
                        sub_chunk=sub_chunk, stream=stream)
    if stream is None and streams(file, config):
        click.echo(f"evaluate: {file} takes more than {HOLD_LIMIT_BYTES / 2**30:g} GiB held in memory; each batch "
                   "is read from the file instead (--in-memory holds it)", err=True)
    if workers is None:
        workers = default_workers(device, seeds)
    estimate = RunEstimate(seeds * epochs, min(workers, seeds))       # one epoch of each worker, then the note
    with Progress("evaluate", seeds * epochs, "epochs", stream=sys.stderr) as bar:
        def on_epoch(done, total, loss):
            bar.set(done, postfix=f"loss {loss:.3f}")
            note = estimate.note(done)
            if note:
                bar.write(f"note: {note}")

        def on_student(done, total, acc):
            bar.write(f"student {done}/{total}: test accuracy {100 * acc:.2f}%")
        result = evaluate(file, test, config, progress=on_student, epoch_progress=on_epoch, workers=workers)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{file}: {mode} mode, {arch}: test accuracy "
               f"{accuracy_text(result['mean'], result['std'], seeds, 2, count=True)} ({test.description})")
    if result["data_wait"] is not None:
        wait = result["data_wait"]
        click.echo(f"streamed: training waited {wait['data_wait_seconds']:.1f} s of {wait['train_seconds']:.1f} s "
                   f"({100 * wait['share']:.1f}%) for batches read from the file")
