"""``ladd evaluate``: students trained on a file, tested; every mode; reproducible."""

import json

import numpy as np
import pytest
import torch

from ladd_cli.main import main
from ladd_format import DenseSpec, DLAWriter
from ladd_format.errors import InputError, NoDenseLabelsError
from ladd_format.experiments.evaluate import EvalConfig, evaluate, random_affine
from ladd_format.labeler import load_source

from conftest import softmax

TINY = dict(arch="convnet-d3", arch_kwargs={"width": 8}, epochs=2, seeds=2, batch_size=64)


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    train = load_source("digits")
    pick = np.concatenate([np.flatnonzero(train.labels == c)[:3] for c in range(10)])
    rng = np.random.default_rng(0)
    dense = softmax(rng.normal(size=(30, 25, 10)) + 4 * np.eye(10)[train.labels[pick]][:, None]).astype(np.float32)
    soft = softmax(4 * np.eye(10)[train.labels[pick]]).astype(np.float32)
    paths = {}
    for name, kwargs in (("dla", {"dense": dense}), ("soft", {"soft": soft}), ("plain", {})):

        paths[name] = folder / f"{name}.dla.h5"
        with DLAWriter(paths[name], num_classes=10, image_shape=(3, 32, 32), mean=(0.3,) * 3, std=(0.3,) * 3,
                       dense=DenseSpec(5, 0.625) if name == "dla" else None,
                       soft_kind="probs" if name == "soft" else None) as w:
            w.append(train.images[pick], train.labels[pick], **kwargs)
    return paths


@pytest.mark.parametrize("mode,file", [("hard", "plain"), ("soft", "soft"), ("ladd", "dla")])
def test_every_mode_trains_and_reports_accuracies(digits_files, mode, file):
    test = load_source("digits-test")
    result = evaluate(digits_files[file], test, EvalConfig(mode=mode, sub_per_image=5, **TINY))
    assert len(result["accuracies"]) == 2 and all(0 <= a <= 1 for a in result["accuracies"])
    assert result["mean"] == pytest.approx(np.mean(result["accuracies"]))


def test_results_are_reproducible_with_fixed_seeds(digits_files):
    test = load_source("digits-test")
    cfg = EvalConfig(mode="ladd", sub_per_image=3, **TINY)
    assert evaluate(digits_files["dla"], test, cfg)["accuracies"] == evaluate(digits_files["dla"], test, cfg)["accuracies"]


def test_a_real_student_beats_chance(digits_files):
    test = load_source("digits-test")
    cfg = EvalConfig(mode="hard", arch="convnet-d3", arch_kwargs={"width": 16}, epochs=40, seeds=1, batch_size=30)
    assert evaluate(digits_files["plain"], test, cfg)["mean"] > 0.3      # chance is 0.1


def test_ladd_mode_needs_dense_labels(digits_files, runner):
    with pytest.raises(NoDenseLabelsError, match="ladd augment"):
        evaluate(digits_files["plain"], load_source("digits-test"), EvalConfig(mode="ladd", **TINY))
    result = runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", "digits-test", "--mode", "ladd"])
    assert result.exit_code == 1 and "ladd augment" in result.output and "Traceback" not in result.output


def test_test_images_must_match(digits_files):
    with pytest.raises(InputError, match="test images"):
        evaluate(digits_files["plain"], load_source("digits-test", 16), EvalConfig(mode="hard", **TINY))


def test_cli_json(digits_files, runner):
    result = runner.invoke(main, ["evaluate", str(digits_files["soft"]), "--test", "digits-test", "--mode", "soft",
                                  "--width", "8", "--epochs", "1", "--seeds", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["mode"] == "soft" and 0 <= data["mean"] <= 1


def test_augmentation_keeps_shape_and_finite_values():
    x = torch.rand(4, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = random_affine(x, g, flip=True)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_reduction_scales_the_local_term(digits_files, runner):
    """`--reduction mean` trains a different student than Eq. 5's sum; unknown values are refused."""
    test = load_source("digits-test")
    cfg = EvalConfig(mode="ladd", sub_per_image=5, **TINY)
    summed = evaluate(digits_files["dla"], test, cfg)
    from dataclasses import replace
    averaged = evaluate(digits_files["dla"], test, replace(cfg, reduction="mean"))
    assert summed["config"]["reduction"] == "sum" and averaged["config"]["reduction"] == "mean"
    result = runner.invoke(main, ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--reduction", "max"])
    assert result.exit_code == 2 and "max" in result.output


def test_report_bars_draw_every_row():
    from ladd_format.experiments.report import COLOURS, draw_accuracy_bars
    rows = [{"method": m, "ipc": ipc, "mean": 0.5 + 0.1 * i, "std": 0.02}
            for ipc in (1, 5) for i, m in enumerate(("hard", "LADD", "baseline++"))]
    img = draw_accuracy_bars(rows)
    pixels = {colour for _, colour in img.getcolors(maxcolors=1 << 16)}
    assert all(c in pixels for c in COLOURS.values())


def test_arch_options_reach_the_student_and_bad_ones_are_one_line(digits_files, runner):
    args = ["evaluate", str(digits_files["plain"]), "--test", "digits-test", "--mode", "hard", "--epochs", "1",
            "--seeds", "1", "--json", "--arch", "vit-cifar", "--width", "24", "--arch-option", "depth=1",
            "--arch-option", "heads=2"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["config"]["arch_kwargs"] == {"width": 24, "depth": 1,
                                                                                            "heads": 2}
    bad = runner.invoke(main, args[:-4] + ["--arch-option", "colour=2"])
    assert bad.exit_code == 1 and "vit-cifar" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1
