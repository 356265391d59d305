"""``ladd evaluate``: students trained on a file, tested; every mode; reproducible."""

import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from ladd_cli.main import main
from ladd_format import DenseSpec, DLAWriter
from ladd_format.errors import InputError, NoDenseLabelsError
from ladd_format.train.evaluate import EvalConfig, evaluate
from ladd_format.train.student import random_affine
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
    assert "--mode hard" in result.output and "dense=False" not in result.output     # CLI words on the CLI


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


def test_reduction_defaults_to_mean_and_the_sum_is_one_flag_away(digits_files, runner):
    """The local term is averaged unless `--reduction sum` asks for Eq. 5's literal sum; unknown
    values are refused."""
    test = load_source("digits-test")
    cfg = EvalConfig(mode="ladd", sub_per_image=5, **TINY)
    assert cfg.reduction == "mean"
    default = evaluate(digits_files["dla"], test, cfg)
    from dataclasses import replace
    averaged = evaluate(digits_files["dla"], test, replace(cfg, reduction="mean"))
    assert default["config"]["reduction"] == "mean" and default["accuracies"] == averaged["accuracies"]
    common = ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--width", "8", "--epochs", "1",
              "--seeds", "1", "--sub-per-image", "3", "--json"]
    for extra, expected in (([], "mean"), (["--reduction", "sum"], "sum")):
        result = runner.invoke(main, common + extra)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["config"]["reduction"] == expected
    help_text = " ".join(runner.invoke(main, ["evaluate", "-h"]).output.split())
    assert "[default: mean]" in help_text and "docs/cli.md compares the two" in help_text and "82.4" not in help_text
    result = runner.invoke(main, ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--reduction", "max"])
    assert result.exit_code == 2 and "max" in result.output


def test_report_bars_draw_every_row():
    from ladd_format.viz.demo_figures import COLOURS, draw_accuracy_bars
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


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladd: error:"), result.output
    return lines[0]


@pytest.mark.parametrize("name", ["digits", "digits-train"])
def test_the_training_split_is_never_a_test_set(digits_files, runner, name):
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", name,
                                                "--mode", "hard"]))
    assert f"--test {name} is the training split" in line and "test on digits-test" in line


def test_a_bad_test_source_lists_only_test_choices(digits_files, runner, tmp_path):
    import re
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test",
                                                str(tmp_path / "nope"), "--mode", "hard"]))
    assert "digits-test" in line and "digits-train" not in line
    assert not re.search(r"\bdigits\b(?!-test)", line), line


def _npz_test_set(path, side, **extra):
    test = load_source("digits-test", side)
    np.savez(path, images=test.images, labels=test.labels, **extra)
    return path


def test_a_test_set_of_another_size_is_refused_unless_resized(digits_files, runner, tmp_path):
    small = _npz_test_set(tmp_path / "small.npz", 16)
    common = ["evaluate", str(digits_files["plain"]), "--test", str(small), "--mode", "hard", "--width", "8",
              "--epochs", "1", "--seeds", "1"]
    line = _one_error_line(runner.invoke(main, common))
    assert "test images are 16x16 pixels, the file's images 32x32" in line and "--resize-test" in line
    result = runner.invoke(main, common + ["--resize-test", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"].endswith("resized 16x16 -> 32x32")
    from ladd_format.train.evaluate import load_test_source
    resized = load_test_source(str(small), (3, 32, 32), resize=True)
    assert resized.images.shape == (360, 3, 32, 32) and resized.images.dtype == np.uint8
    # digits-test is rendered at the file's size: no flag needed
    assert load_test_source("digits-test", (3, 16, 16)).images.shape == (360, 3, 16, 16)


def test_test_classes_and_labels_must_fit_the_file(digits_files, runner, tmp_path):
    from ladd_format.train.evaluate import check_test_fits
    digits_test = load_source("digits-test")
    keep = digits_test.labels < 5
    five_names = tmp_path / "five_names.npz"
    np.savez(five_names, images=digits_test.images[keep], labels=digits_test.labels[keep],
             class_names=np.array([str(c) for c in range(5)]))
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", str(five_names),
                                                "--mode", "hard"]))
    assert "the test set has 5 classes, the file 10" in line
    test = load_source("digits-test")
    check_test_fits(test, (3, 32, 32), 10)                                   # fits
    inferred = load_source(str(_npz_test_set(tmp_path / "plain.npz", 32)))   # classes inferred from labels
    low = type(inferred)(inferred.images[inferred.labels < 7], inferred.labels[inferred.labels < 7],
                         [str(c) for c in range(7)], "classes 0..6", classes_declared=False)
    check_test_fits(low, (3, 32, 32), 10)             # a test set may lack the last classes if it names none
    for bad, found in ((-1, "-1..9"), (10, "0..10")):
        labels = test.labels.copy()
        labels[0] = bad
        with pytest.raises(InputError, match=rf"test labels must lie in 0\.\.9 .* found {found}"):
            check_test_fits(type(test)(test.images, labels, test.class_names, "bad", False), (3, 32, 32), 10)
    with pytest.raises(InputError, match="1 channel"):
        check_test_fits(type(test)(test.images[:, :1], test.labels, test.class_names, "grey"), (3, 32, 32), 10)


def test_evaluate_shows_progress_within_a_seed_in_a_log(digits_files, runner, monkeypatch):
    """stderr is no terminal under CliRunner: plain lines, one per epoch with interval 0, across seeds."""
    monkeypatch.setenv("LADD_PROGRESS_INTERVAL", "0")
    result = runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", "digits-test", "--mode", "hard",
                                  "--width", "8", "--epochs", "3", "--seeds", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("evaluate: ")]
    assert [line.split(" epochs")[0] for line in lines] == [f"evaluate: {i}/6" for i in range(1, 7)]
    assert "loss" in lines[0] and "(100%)" in lines[-1]
    assert "student 1/2: test accuracy" in result.stderr and "student 2/2: test accuracy" in result.stderr


@pytest.mark.mutation_skip
def test_seeds_in_worker_processes_give_the_accuracies_of_one_process(digits_files, runner, monkeypatch):
    """--workers 2 trains the two seeds in two spawned processes; with the thread count fixed, each
    seed's accuracy is exactly that of the in-process run, and the progress counts every epoch."""
    monkeypatch.setenv("LADD_PROGRESS_INTERVAL", "0")
    args = ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--width", "8", "--epochs", "3",
            "--seeds", "2", "--sub-per-image", "2", "--threads", "1", "--json"]
    alone = runner.invoke(main, args + ["--workers", "1"])
    pooled = runner.invoke(main, args + ["--workers", "2"])
    assert alone.exit_code == 0 and pooled.exit_code == 0, alone.output + pooled.output
    a, b = json.loads(alone.stdout), json.loads(pooled.stdout)
    assert a["accuracies"] == b["accuracies"]
    lines = [line for line in pooled.stderr.splitlines() if line.startswith("evaluate: ")]
    assert lines[-1].startswith("evaluate: 6/6 epochs")


def test_verbose_evaluate_logs_each_epoch_loss(digits_files, runner):
    import logging
    args = ["evaluate", str(digits_files["plain"]), "--test", "digits-test", "--mode", "hard", "--width", "8",
            "--epochs", "2", "--seeds", "1"]
    try:
        quiet = runner.invoke(main, args)
        loud = runner.invoke(main, ["-v", *args])
    finally:
        logging.getLogger("ladd_format").setLevel(logging.NOTSET)
    assert quiet.exit_code == 0 and loud.exit_code == 0, loud.output
    assert "epoch 2/2: loss" not in quiet.stderr
    assert "student seed 0, epoch 1/2: loss" in loud.stderr and "student seed 0, epoch 2/2: loss" in loud.stderr


@pytest.mark.parametrize("jobs, cores, expected", [
    (3, 2, 1),     # 2 rounds, one core idle in the second (use 0.75): one process with both cores' threads
    (2, 2, 2), (4, 2, 2), (18, 2, 2), (5, 2, 2),   # rounds busy (use 1.0, 0.83): one process per core
    (18, 4, 4),    # 5 rounds, use 0.9
    (3, 4, 3),     # one round: one process per job
    (1, 8, 1), (6, 4, 1), (8, 4, 4)])
def test_default_workers_uses_the_pool_when_it_keeps_the_cores_busy(jobs, cores, expected):
    from ladd_format.train.pool import default_workers
    assert default_workers("cpu", jobs, cores=cores) == expected


@pytest.mark.parametrize("mode,file", [("soft", "soft"), ("ladd", "dla")])
def test_soft_and_ladd_students_learn(digits_files, mode, file):
    """The soft and dense labels of the fixture point at the true classes: students trained on them
    must beat chance (0.1) by a wide margin on the held-out digits, as hard-label ones do."""
    test = load_source("digits-test")
    cfg = EvalConfig(mode=mode, arch="convnet-d3", arch_kwargs={"width": 16}, epochs=40, seeds=1, batch_size=30,
                     sub_per_image=5)
    assert evaluate(digits_files[file], test, cfg)["mean"] > 0.6      # measured 0.82-0.83 at 1 and 2 threads


def test_the_mean_reduction_trains_on_a_smaller_loss_than_the_sum(digits_files):
    """Same seed, one epoch, all 25 sub-images: the first reported loss with reduction="sum" is the
    global term plus 25x the averaged local term, so it is far larger than with "mean"."""
    from dataclasses import replace
    test = load_source("digits-test")
    cfg = EvalConfig(mode="ladd", arch="convnet-d3", arch_kwargs={"width": 8}, epochs=1, seeds=1, batch_size=64)
    losses = {}
    for reduction in ("mean", "sum"):
        seen = []
        evaluate(digits_files["dla"], test, replace(cfg, reduction=reduction),
                 epoch_progress=lambda done, total, loss: seen.append(loss))
        losses[reduction] = seen[0]
    assert losses["sum"] > 5 * losses["mean"]


@pytest.mark.parametrize("mode,file", [("ladd", "dla"), ("soft", "soft")])
def test_micro_batches_accumulate_the_gradient_of_the_whole_batch(digits_files, monkeypatch, mode, file):
    """With the augmentation an identity (its random draws are the only thing micro-batches order
    differently) and instance normalisation (per image), micro-batches of 7 give the weights of
    whole batches of 30 up to float32 sums; a micro-batch of the batch size gives them exactly."""
    from ladd_format.train import student as E
    from ladd_format.torch import DLADataset

    monkeypatch.setattr(E, "random_affine", lambda x, gen, flip: x)
    ds = DLADataset(digits_files[file], dense=mode == "ladd", soft_labels=mode == "soft", in_memory=True)
    base = dict(mode=mode, arch="convnet-d3", arch_kwargs={"width": 8}, epochs=2, seeds=1, batch_size=30,
                device="cpu")
    whole = E.train_student(ds, EvalConfig(**base), 0, torch.device("cpu"))
    same = E.train_student(ds, EvalConfig(**base, micro_batch=30), 0, torch.device("cpu"))
    micro = E.train_student(ds, EvalConfig(**base, micro_batch=7), 0, torch.device("cpu"))
    for a, b, c in zip(whole.parameters(), same.parameters(), micro.parameters()):
        assert torch.equal(a, b)
        assert torch.allclose(a, c, rtol=0, atol=1e-5)
    assert any(not torch.equal(a, c) for a, c in zip(whole.parameters(), micro.parameters()))


def test_in_memory_sets_stay_encoded_and_batches_decode_them(digits_files):
    from ladd_format import open_dla
    from ladd_format.torch import DLADataset

    ds = DLADataset(digits_files["dla"], in_memory=True)
    images, labels, dense, soft = ds.batch([4, 0, 29])
    assert images.dtype == torch.uint8 and soft is None and labels.tolist() == [ds[i][1] for i in (4, 0, 29)]
    with open_dla(digits_files["dla"]) as f:
        assert torch.equal(dense[2], torch.from_numpy(f.dense(29, 30)[0]))
    assert torch.equal(ds.to_float(images[0]), ds[4][0]) and torch.equal(ds[0][2], dense[1])
    assert ds.batch([4, 0], targets=False)[2:] == (None, None)            # nothing decoded
    assert torch.equal(ds.targets([29])[0][0], dense[2]) and ds.targets([29])[1] is None
    whole = ds.batch(np.arange(len(ds)), targets=False)[0]            # the held set itself, not a copy
    assert np.shares_memory(whole.numpy(), ds._memory["images"]) and torch.equal(whole[4], images[0])
    assert not np.shares_memory(ds.batch(np.arange(len(ds))[::-1], targets=False)[0].numpy(), ds._memory["images"])


@pytest.mark.parametrize("file,kwargs", [("dla", {}), ("soft", {"dense": False, "soft_labels": True}),
                                         ("plain", {"dense": False})])
def test_batches_read_from_the_file_equal_the_in_memory_batches(digits_files, file, kwargs):
    """batch()/targets() of a file-backed dataset read runs of consecutive rows and put them back in
    the order asked: repeats, negative indices, reversed and empty selections included."""
    from ladd_format.torch import DLADataset

    memory = DLADataset(digits_files[file], in_memory=True, **kwargs)
    disk = DLADataset(digits_files[file], **kwargs)
    assert memory.in_memory and not disk.in_memory
    rng = np.random.default_rng(3)
    for idx in ([], [5], [3, 4, 5, 9, 9, 0, 29, -1], list(range(29, -1, -1)), rng.integers(0, 30, 50)):
        for a, b in zip(memory.batch(idx), disk.batch(idx)):
            assert (a is None and b is None) or (a.dtype == b.dtype and torch.equal(a, b)), idx
        for a, b in zip(memory.targets(idx), disk.targets(idx)):
            assert (a is None and b is None) or torch.equal(a, b)
    with pytest.raises(IndexError):
        disk.batch([30])
    with pytest.raises(IndexError):
        memory.batch([-31])


@pytest.mark.parametrize("mode,file,micro", [("ladd", "dla", 7), ("soft", "soft", None), ("hard", "plain", 4)])
def test_a_streamed_student_is_the_in_memory_student(digits_files, mode, file, micro):
    """--stream reads each batch from the file on a reader thread; the same seed gives the same
    weights, bit for bit, as the set held in memory (same batches, same decoded values)."""
    from ladd_format.train import student as E
    from ladd_format.torch import DLADataset

    base = dict(mode=mode, arch="convnet-d3", arch_kwargs={"width": 8}, epochs=2, seeds=1, batch_size=12,
                device="cpu", sub_per_image=3, micro_batch=micro)
    kwargs = dict(dense=mode == "ladd", soft_labels=mode == "soft")
    held = E.train_student(DLADataset(digits_files[file], in_memory=True, **kwargs), EvalConfig(**base), 0,
                           torch.device("cpu"))
    streamed = E.train_student(DLADataset(digits_files[file], **kwargs), EvalConfig(**base, stream=True), 0,
                               torch.device("cpu"))
    for a, b in zip(held.parameters(), streamed.parameters()):
        assert torch.equal(a, b)


def test_a_streamed_run_reports_how_long_training_waited_for_its_batches(digits_files, runner, monkeypatch):
    """evaluate reports the share of a streamed run's training spent waiting for the reader thread
    (None for a held set: no reader); a planted slow reader (0.2 s a batch) shows in the wait: most
    of the first batch's 0.2 s, which no training overlaps (the read starts just before the wait
    does; a bound that holds on a loaded machine); the CLI prints it."""
    from ladd_format.train import student as E
    from ladd_format.torch import DLADataset

    test = load_source("digits-test")
    config = EvalConfig(mode="ladd", device="cpu", sub_per_image=1, **{**TINY, "seeds": 1, "epochs": 1,
                                                                      "batch_size": 32})
    assert evaluate(digits_files["dla"], test, replace(config, stream=False))["data_wait"] is None
    wait = evaluate(digits_files["dla"], test, replace(config, stream=True))["data_wait"]
    assert 0 <= wait["data_wait_seconds"] <= wait["train_seconds"] and 0 <= wait["share"] <= 1
    batch = DLADataset.batch

    def slow(self, *args, **kwargs):
        time.sleep(0.2)
        return batch(self, *args, **kwargs)
    monkeypatch.setattr(DLADataset, "batch", slow)
    timing = {}
    E.train_student(DLADataset(digits_files["dla"]), replace(config, stream=True), 0, torch.device("cpu"),
                    timing=timing)
    assert 0.15 <= timing["data_wait_seconds"] <= timing["train_seconds"], timing
    monkeypatch.setattr(DLADataset, "batch", batch)
    out = runner.invoke(main, ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--width", "8",
                               "--epochs", "1", "--seeds", "1", "--sub-per-image", "1", "--stream"])
    assert out.exit_code == 0 and "streamed: training waited " in out.stdout and "for batches read from the file" \
        in out.stdout, out.output


def test_a_streamed_student_holds_only_its_batches(tmp_path):
    """In memory the set is held (its numpy arrays, which tracemalloc sees); streamed, the peak is a
    couple of batches and the file handle, far below the set."""
    import tracemalloc

    from ladd_format.train import student as E
    from ladd_format.torch import DLADataset

    rng = np.random.default_rng(0)
    m, shape = 960, (3, 48, 48)
    path = tmp_path / "big.dla.h5"
    with DLAWriter(path, num_classes=4, image_shape=shape, mean=(0.5,) * 3, std=(0.25,) * 3,
                   dense=DenseSpec(3, 0.625)) as w:
        w.append(rng.integers(0, 256, (m, *shape), dtype=np.uint8), rng.integers(0, 4, m),
                 dense=softmax(rng.normal(size=(m, 9, 4))).astype(np.float32))
    set_bytes = m * int(np.prod(shape))
    config = dict(mode="ladd", arch="convnet-d3", arch_kwargs={"width": 2}, epochs=1, seeds=1, batch_size=16,
                  device="cpu", sub_per_image=1)
    peaks = {}
    for stream in (False, True):
        tracemalloc.start()
        E.train_student(DLADataset(path, in_memory=not stream), EvalConfig(**config, stream=stream), 0,
                        torch.device("cpu"))
        peaks[stream] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[False] >= set_bytes
    assert peaks[True] < set_bytes / 4, peaks


def test_stream_on_the_command_line_gives_the_same_students_and_reports_damage_in_one_line(
        digits_files, runner, tmp_path):
    import shutil

    from conftest import tamper

    args = ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--width", "8", "--epochs", "2",
            "--seeds", "2", "--batch-size", "16", "--sub-per-image", "2", "--json", "--workers", "1"]
    outputs = [runner.invoke(main, args + extra).output for extra in ([], ["--stream"])]
    held, streamed = (json.loads(out[out.index("{"):]) for out in outputs)
    assert streamed["accuracies"] == held["accuracies"] and streamed["config"]["stream"] is True
    damaged = shutil.copy(digits_files["dla"], tmp_path / "damaged.dla.h5")

    def flip_a_pixel(f):
        row = f["images"][17]
        row[0, 0, 0] ^= 0xFF
        f["images"][17] = row
    tamper(damaged, flip_a_pixel, rows=False)
    result = runner.invoke(main, ["evaluate", str(damaged), "--test", "digits-test", "--width", "8", "--epochs", "1",
                                  "--seeds", "1", "--stream"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if str(damaged) in line]
    assert len(lines) == 1 and "row 17" in lines[0] and "digest" in lines[0], result.output


def test_micro_batch_is_bounded_on_the_command_line(digits_files, runner):
    result = runner.invoke(main, ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--micro-batch", "0"])
    assert result.exit_code == 1 and "--micro-batch must be >= 1, got 0" in result.output


def _write(path, images, labels, **kwargs):
    k = images.shape[1]
    with DLAWriter(path, num_classes=10, image_shape=images.shape[1:], mean=kwargs.pop("mean", (0.3,) * k),
                   std=kwargs.pop("std", (0.3,) * k), **kwargs) as w:
        w.append(images, labels)
    return path


def test_a_dla_h5_test_set_is_read_a_batch_at_a_time_and_tests_as_its_npz(digits_files, runner, tmp_path):
    """--test x.dla.h5: the same students get the same accuracies as on the same images from an
    .npz (held), in one process and in worker processes; the CLI names it and refuses --resize-test."""
    from ladd_format.train.evaluate import TestBatches, load_test_source
    from ladd_format.torch import DLADataset

    digits_test = load_source("digits-test")
    as_npz = _npz_test_set(tmp_path / "test.npz", 32)
    # its own mean/std differ from the training file's: pixel images are normalised with the training file's
    as_file = _write(tmp_path / "test.dla.h5", digits_test.images, digits_test.labels, mean=(0.5,) * 3,
                     std=(0.2,) * 3)
    test_file = load_test_source(str(as_file), (3, 32, 32))
    assert test_file.num_images == 360 and "read a batch at a time" in test_file.description
    batches = TestBatches(test_file, DLADataset(digits_files["plain"], dense=False), "cpu")
    assert batches._held is None and len(batches) == 360
    cfg = EvalConfig(mode="hard", **TINY)
    held = evaluate(digits_files["plain"], load_test_source(str(as_npz), (3, 32, 32)), cfg)["accuracies"]
    assert evaluate(digits_files["plain"], test_file, cfg)["accuracies"] == held
    args = ["evaluate", str(digits_files["plain"]), "--mode", "hard", "--width", "8", "--epochs", "2", "--seeds", "2",
            "--batch-size", "64", "--json", "--workers", "2", "--threads", "1"]
    outs = [runner.invoke(main, args + ["--test", str(test)]) for test in (as_npz, as_file)]
    assert all(out.exit_code == 0 for out in outs), [out.output for out in outs]
    npz_result, file_result = (json.loads(out.stdout) for out in outs)
    assert file_result["accuracies"] == npz_result["accuracies"] and file_result["test"].startswith("test.dla.h5")
    line = _one_error_line(runner.invoke(main, args + ["--test", str(as_file), "--resize-test"]))
    assert "--resize-test applies to" in line and str(as_file) in line


def test_a_dla_h5_test_set_must_fit_the_file(digits_files, runner, tmp_path):
    digits_test = load_source("digits-test", 16)
    small = _write(tmp_path / "small.dla.h5", digits_test.images, digits_test.labels)
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", str(small),
                                                "--mode", "hard"]))
    assert "test images are 16x16 pixels, the file's images 32x32" in line and "--resize-test" in line
    grey = _write(tmp_path / "grey.dla.h5", digits_test.images[:, :1], digits_test.labels)
    assert "1 channel" in _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test",
                                                               str(grey), "--mode", "hard"]))
    with DLAWriter(tmp_path / "twelve.dla.h5", num_classes=12, image_shape=(3, 32, 32), mean=(0.3,) * 3,
                   std=(0.3,) * 3) as w:
        w.append(load_source("digits-test").images, load_source("digits-test").labels)
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test",
                                                str(tmp_path / "twelve.dla.h5"), "--mode", "hard"]))
    assert "the test set has 12 classes, the file 10" in line


def test_test_images_are_normalised_as_the_training_files_images_whatever_its_space(digits_files, tmp_path):
    """A float training file (pixel01 or normalized space) and uint8 test images: the student sees
    the test pixels on the training file's scale, normalised with its mean/std (before, a normalized
    file's test images reached the student as 0..255). A normalized test file comes back to the same."""
    from ladd_format.train.evaluate import TestBatches, load_test_source
    from ladd_format.torch import DLADataset

    test = load_source("digits-test")
    p01 = test.images.astype(np.float32) / 255
    mean, std = np.array([0.2, 0.3, 0.4]), np.array([0.5, 0.25, 0.2])
    expected = (p01 - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
    stats = dict(mean=tuple(mean), std=tuple(std))
    files = {
        "pixel255": _write(tmp_path / "u8.dla.h5", test.images, test.labels, **stats),
        "pixel01": _write(tmp_path / "p01.dla.h5", p01, test.labels, image_dtype="float32", space="pixel01", **stats),
        "normalized": _write(tmp_path / "norm.dla.h5", expected.astype(np.float32), test.labels,
                             image_dtype="float32", space="normalized", **stats),
    }
    other_stats = dict(mean=(0.5,) * 3, std=(0.1,) * 3)      # a test file's own statistics
    tests = {"uint8 held": test,
             "pixel255 file": load_test_source(str(_write(tmp_path / "t8.dla.h5", test.images, test.labels,
                                                          **other_stats)), (3, 32, 32)),
             "normalized file": load_test_source(str(_write(
                 tmp_path / "tn.dla.h5", ((p01 - 0.5) / 0.1).astype(np.float32), test.labels, image_dtype="float32",
                 space="normalized", **other_stats)), (3, 32, 32))}
    for space, path in files.items():
        train = DLADataset(path, dense=False)
        assert train.space == space
        for name, source in tests.items():
            got = torch.cat([x for x, _ in TestBatches(source, train, "cpu").batches(100, "cpu")]).numpy()
            np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5, err_msg=f"{space} file, {name} test")


def test_a_zca_file_is_tested_only_on_zca_images(digits_files, tmp_path):
    from ladd_format.train.evaluate import TestBatches, load_test_source
    from ladd_format.torch import DLADataset

    test = load_source("digits-test")
    whitened = np.random.default_rng(0).normal(size=test.images.shape).astype(np.float32)
    zca = _write(tmp_path / "zca.dla.h5", whitened, test.labels, image_dtype="float32", space="zca")
    zca_test = load_test_source(str(_write(tmp_path / "zca_test.dla.h5", whitened, test.labels, image_dtype="float32",
                                           space="zca")), (3, 32, 32))
    with pytest.raises(InputError, match="the file's images are ZCA-whitened and the test images are not"):
        TestBatches(test, DLADataset(zca, dense=False), "cpu")
    with pytest.raises(InputError, match="the test images are ZCA-whitened and the file's images are not"):
        TestBatches(zca_test, DLADataset(digits_files["plain"], dense=False), "cpu")
    got = torch.cat([x for x, _ in TestBatches(zca_test, DLADataset(zca, dense=False), "cpu").batches(64, "cpu")])
    assert torch.equal(got, torch.from_numpy(whitened))          # as stored


def test_held_bytes_is_what_an_in_memory_set_holds(digits_files):
    from ladd_format.reader import open_dla
    from ladd_format.torch import DLADataset

    for name, kwargs in (("dla", {}), ("soft", {"dense": False, "soft_labels": True}), ("plain", {"dense": False})):
        held = DLADataset(digits_files[name], in_memory=True, **kwargs)._memory
        nbytes = sum(sum(v.nbytes for v in value.values()) if key == "dense" else value.nbytes
                     for key, value in held.items())
        with open_dla(digits_files[name]) as f:
            assert f.held_bytes(dense=kwargs.get("dense", True), soft_labels=kwargs.get("soft_labels", False)) \
                == nbytes, name


def test_a_set_above_the_hold_limit_is_streamed_by_default(digits_files, runner, monkeypatch):
    """stream=None holds a set up to HOLD_LIMIT_BYTES and streams a larger one (the same students);
    --stream and --in-memory force either; the CLI says when the default streams."""
    from ladd_format.train import student as E
    from ladd_format.reader import open_dla

    with open_dla(digits_files["dla"]) as f:
        size = f.held_bytes()
    config = EvalConfig(mode="ladd", **TINY)
    assert E.streams(digits_files["dla"], config) is False
    monkeypatch.setattr(E, "HOLD_LIMIT_BYTES", size - 1)
    assert E.streams(digits_files["dla"], config) is True
    assert E.streams(digits_files["dla"], replace(config, stream=False)) is False
    args = ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--width", "8", "--epochs", "1",
            "--seeds", "1", "--batch-size", "16", "--sub-per-image", "2", "--json"]
    outs = {extra: runner.invoke(main, args + ([extra] if extra else [])) for extra in ("", "--in-memory", "--stream")}
    assert all(out.exit_code == 0 for out in outs.values()), {k: v.output for k, v in outs.items()}
    results = {extra: json.loads(out.stdout) for extra, out in outs.items()}
    assert results[""]["config"]["stream"] is True and results["--in-memory"]["config"]["stream"] is False
    assert results[""]["accuracies"] == results["--in-memory"]["accuracies"] == results["--stream"]["accuracies"]
    assert "each batch is read from the file instead (--in-memory holds it)" in outs[""].stderr
    assert "read from the file" not in outs["--stream"].stderr + outs["--in-memory"].stderr
    monkeypatch.setattr(E, "HOLD_LIMIT_BYTES", size)
    assert E.streams(digits_files["dla"], config) is False


def test_a_dla_h5_test_set_is_never_held(tmp_path):
    """Testing on a .dla.h5 holds a batch at a time (tracemalloc sees its numpy arrays); the same
    images from an .npz are held whole."""
    import tracemalloc

    from ladd_format.train.evaluate import TestBatches, accuracy, load_test_source
    from ladd_format.torch import DLADataset

    rng = np.random.default_rng(0)
    m, shape = 960, (3, 48, 48)
    images, labels = rng.integers(0, 256, (m, *shape), dtype=np.uint8), rng.integers(0, 10, m)
    train = DLADataset(_write(tmp_path / "train.dla.h5", images[:10], labels[:10]), dense=False)
    test_file = load_test_source(str(_write(tmp_path / "test.dla.h5", images, labels)), shape)
    np.savez(tmp_path / "test.npz", images=images, labels=labels)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(shape)), 10))
    peaks, accs = {}, {}
    for name, test in (("file", test_file), ("npz", str(tmp_path / "test.npz"))):
        tracemalloc.start()
        source = test if name == "file" else load_test_source(test, shape)
        accs[name] = accuracy(model, TestBatches(source, train, "cpu"), "cpu", batch_size=32)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    set_bytes = images.nbytes
    assert accs["file"] == accs["npz"]
    assert peaks["npz"] >= set_bytes and peaks["file"] < set_bytes / 4, peaks


def test_a_damaged_or_special_dla_h5_test_set_is_one_line(digits_files, runner, tmp_path):
    import os

    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", str(empty),
                                                "--mode", "hard"]))
    assert str(empty) in line and "not an HDF5 file" in line
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", str(fifo),
                                                "--mode", "hard"]))
    assert "FIFO" in line and "not opened" in line


# -- one seed, memory, time: what a CPU user is told -----------------------------------------------
def test_one_seed_reports_no_spread(digits_files, runner):
    """One student has no spread to show: '(1 seed)', not '+- 0.00%'."""
    result = runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", "digits-test", "--mode", "hard",
                                  "--width", "8", "--epochs", "1", "--seeds", "1"])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    assert "test accuracy " in line and "% (1 seed)" in line and "+-" not in line and "seed(s)" not in line, line
    from ladd_format.train.accuracy import accuracy_table
    row = {"method": "LADD", "ipc": 1, "bytes": 1000, "extra_pct": 30.0, "mean": 0.9, "std": 0.0, "accuracies": [0.9]}
    assert accuracy_table([row])[1].endswith("90.0% (1 seed)")
    assert accuracy_table([dict(row, std=0.012, accuracies=[0.88, 0.9, 0.92])])[1].endswith("90.0 +-  1.2%")


#: what torch's CPU allocator raises when an allocation fails
ALLOC_FAILURE = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 6300000000 bytes. Error code 12 (Cannot allocate memory)")


def test_an_allocation_failure_names_the_options_that_hold_less(digits_files, runner, monkeypatch):
    import ladd_format.train.student as student_module

    def no_memory(*args, **kwargs):
        raise RuntimeError(ALLOC_FAILURE)
    monkeypatch.setattr(student_module, "ladd_loss", no_memory)
    result = runner.invoke(main, ["evaluate", str(digits_files["dla"]), "--test", "digits-test", "--width", "8",
                                  "--epochs", "1", "--seeds", "1"])
    line = _one_error_line(result)
    assert "internal error" not in line and "ran out of memory" in line and "an allocation of 6.3 GB failed" in line
    assert all(flag in line for flag in ("--micro-batch", "--sub-per-image", "--sub-chunk")), line
    assert str(digits_files["dla"]) in line


@pytest.mark.parametrize("exc,expected", [(RuntimeError(ALLOC_FAILURE), True), (MemoryError(), True),
                                          (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), True),
                                          (RuntimeError("size mismatch"), False), (ValueError("memory"), False)])
def test_allocation_failures_are_told_from_other_errors(exc, expected):
    from ladd_format.train.student import is_out_of_memory
    assert is_out_of_memory(exc) is expected


def test_sub_chunk_trains_the_same_student(digits_files):
    """--sub-chunk only changes how many views a forward pass takes: the epoch losses of a chunked
    and an unchunked student agree to float rounding (5e-5 relative after 3 epochs)."""
    test = load_source("digits-test")
    losses = {}
    for chunk in (0, 7):
        seen = []
        evaluate(digits_files["dla"], test, EvalConfig(mode="ladd", sub_chunk=chunk, **dict(TINY, seeds=1, epochs=3)),
                 epoch_progress=lambda done, total, loss, seen=seen: seen.append(loss))
        losses[chunk] = seen
    assert losses[0] == pytest.approx(losses[7], rel=5e-5)


def test_sub_chunk_is_bounded_on_the_command_line(digits_files, runner):
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["dla"]), "--test", "digits-test",
                                                "--sub-chunk", "-1"]))
    assert "--sub-chunk must be >= 0" in line


def test_a_long_run_says_how_long_it_will_take():
    from ladd_format.train.evaluate import ESTIMATE_NOTE_SECONDS, RunEstimate
    now = [0.0]
    estimate = RunEstimate(900, clock=lambda: now[0])          # 300 epochs x 3 seeds
    now[0] = 35.0
    note = estimate.note(1)
    assert note.startswith("this run will take about 8 h 45 min (1 of 900 epochs took 35.0 s)")
    assert "--epochs" in note and "--seeds" in note and "--sub-per-image" in note
    assert estimate.note(2) is None                           # said once
    short = RunEstimate(10, clock=lambda: now[0])
    now[0] += ESTIMATE_NOTE_SECONDS / 20
    assert short.note(1) is None
    pooled = RunEstimate(600, parallel=2, clock=lambda: now[0])
    now[0] += 10.0
    assert pooled.note(1) is None and "about 50 min 00 s" in pooled.note(2)   # an epoch of each worker


def test_the_estimate_is_shown_on_stderr(digits_files, runner, monkeypatch):
    import ladd_format.train.evaluate as evaluate_module
    monkeypatch.setattr(evaluate_module, "ESTIMATE_NOTE_SECONDS", 0.0)
    result = runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", "digits-test", "--mode", "hard",
                                  "--width", "8", "--epochs", "2", "--seeds", "1"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: this run will take about")]
    assert len(notes) == 1 and "(1 of 2 epochs took" in notes[0], result.stderr


def test_the_hint_for_a_dla_h5_test_set_of_another_size_names_real_options(digits_files, runner, tmp_path):
    """`ladd convert` has no --image-size: the hint names the route that exists (export the test
    set as an .npz, then --resize-test), and every option it names is one of the commands'."""
    digits_test = load_source("digits-test", 16)
    small = _write(tmp_path / "small.dla.h5", digits_test.images, digits_test.labels)
    line = _one_error_line(runner.invoke(main, ["evaluate", str(digits_files["plain"]), "--test", str(small),
                                                "--mode", "hard"]))
    assert "--image-size" not in line
    assert "ladd export" in line and "--resize-test" in line
