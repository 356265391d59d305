"""``ladd train-labeler``: train the labeler that ``ladd augment`` labels sub-images with."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ladd_format import LaddError
from ladd_format.extras import require
from ladd_format.spec.limits import MAX_IMAGE_SIDE

from .common import bounded, fail_cleanly, interrupted


@click.command(name="train-labeler")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Folder for the checkpoints.")
@click.option("--arch", default="convnet-d5", show_default=True,
              help="convnet-d3/-d4/-d5 or a torchvision classifier (resnet18, alexnet, vgg11, ...).")
@click.option("--width", type=int, default=None, help="ConvNet width (default 128).")
@click.option("--epochs", type=int, default=50, show_default=True)
@click.option("--save-epochs", default=None,
              help="Epochs to keep a checkpoint of, comma-separated [default: five evenly spaced epochs ending at "
                   "--epochs, ceil(i*EPOCHS/5): 10,20,30,40,50 for 50 epochs, every epoch for 5 or fewer].")
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--image-size", type=int, default=None,
              help="Resize training images to this side (default: their own size; 32 for digits).")
@click.option("--val-split", type=float, default=0.1, show_default=True,
              help="Share of SOURCE held out to measure each checkpoint (0: no validation set); a warning names "
                   "the classes it misses.")
@click.option("--flip", is_flag=True, help="Random horizontal flips while training.")
@click.option("--min-crop", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Random square crops of MIN_CROP..1 of each side, resized back (1 = off, the default): the "
                   "labeler then sees views like the sub-images, yet students trained on its dense labels did worse "
                   "than with whole-image training (docs/cli.md); the demo trains on whole images.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace checkpoints already in OUTPUT.")
@fail_cleanly
def command(source, output, arch, width, epochs, save_epochs, lr, batch_size, image_size, val_split, flip, min_crop,
            device, seed, force):
    """Train a labeler on SOURCE: an ImageFolder directory, an .npz (images, labels), or `digits`
    (scikit-learn's bundled digits, offline)."""
    require("torch", "ladd train-labeler")
    from ladd_format.labeler import TrainConfig, load_source, train_labeler
    from ladd_format.labeler.checkpoint import MAX_ARCH_INT
    from ladd_format.labeler.train import check_output_folder, resolve_save_epochs
    from ladd_format.progress import Progress
    bounded("--width", width, 1, MAX_ARCH_INT)
    bounded("--image-size", image_size, 1, MAX_IMAGE_SIDE)
    bounded("--epochs", epochs, 1)
    bounded("--batch-size", batch_size, 1)
    keep = None
    if save_epochs is not None:
        try:
            keep = tuple(int(v) for v in save_epochs.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated epochs, got {save_epochs!r}",
                                     param_hint="'--save-epochs'") from None
    keep = resolve_save_epochs(keep, epochs)           # before the data is loaded
    if not 0 <= val_split < 1:
        raise LaddError(f"--val-split must lie in [0, 1), got {val_split}")
    check_output_folder(output, force)
    data = load_source(source, image_size)
    config = TrainConfig(arch=arch, arch_kwargs={"width": width} if width else {}, epochs=epochs,
                         save_epochs=keep, lr=lr, batch_size=batch_size, val_split=val_split, flip=flip,
                         min_crop=min_crop, device=device, seed=seed)
    click.echo(f"training {arch} on {data.description}, {data.num_classes} classes; checkpoints at epoch(s) "
               f"{','.join(map(str, keep))}", err=True)
    saved: list[int] = []                              # the epochs whose checkpoint this run saved
    try:
        with Progress("train-labeler", epochs, "epochs", stream=sys.stderr) as bar:
            def on_step(epoch, step, steps):
                if step < steps:                       # the epoch's end is on_epoch's, with its loss
                    bar.set(epoch - 1 + step / steps)

            def on_epoch(epoch, total, metrics):
                saved.extend([epoch] if epoch in keep else [])
                bar.set(epoch, postfix=f"epoch {epoch} loss {metrics['loss']:.3f}, train acc "
                                       f"{metrics['train_accuracy']:.3f}")
            records = train_labeler(data, output, config, overwrite=force, progress=on_epoch,
                                    step_progress=on_step, warn=lambda line: bar.write(f"ladd: warning: {line}"))
    except KeyboardInterrupt:
        interrupted(f"kept the checkpoint(s) of epoch(s) {','.join(map(str, saved))} in {output} (no metrics.json: "
                    "the run did not finish)" if saved else "nothing was written")
    for r in records:
        val = ("no validation set" if r["val_accuracy"] is None else
               f"val acc {r['val_accuracy']:.3f}  val entropy {r['val_entropy']:.3f} nats")
        click.echo(f"epoch {r['epoch']:>3}: {r['path']}  train acc {r['train_accuracy']:.3f}  {val}")
