"""Inputs made for other data are refused, or taken with ``--allow-mismatch`` and a warning: a labeler
trained on other classes (augment), a test set of other classes or another dataset (evaluate)."""

import numpy as np
import pytest

from ladd_cli.main import main
from ladd_format import DLAWriter, verify
from ladd_format.train import testset
from ladd_format.train.testset import check_test_fits, load_test_source, open_test_file
from ladd_format.labeler import TrainConfig, load_checkpoint, train_labeler
from ladd_format.labeler.sources import load_source
from ladd_format.presets import get_preset

CIFAR10 = list(get_preset("cifar10").class_names)
TINY = TrainConfig(arch="convnet-d3", arch_kwargs={"width": 8}, epochs=1, save_epochs=(1,), batch_size=256)


def write_set(path, class_names=None, source_dataset=None, m=20):
    """A plain 10-class 3x32x32 set (digits images: any pixels do) with the given names and dataset."""
    train = load_source("digits")
    with DLAWriter(path, num_classes=10, image_shape=(3, 32, 32), mean=(0.3,) * 3, std=(0.3,) * 3,
                   class_names=class_names, source_dataset=source_dataset) as w:
        w.append(train.images[:m], train.labels[:m])
    return path


@pytest.fixture(scope="module")
def digits_labeler(tmp_path_factory):
    return train_labeler(load_source("digits"), tmp_path_factory.mktemp("digits-labeler"), TINY)[-1]["path"]


def test_a_digits_labeler_does_not_label_a_cifar10_file_without_a_word(tmp_path, digits_labeler, runner):
    cifar = write_set(tmp_path / "cifar.dla.h5", CIFAR10, "cifar10")
    out = tmp_path / "la.dla.h5"
    args = ["augment", str(cifar), "--labeler", digits_labeler, "-o", str(out), "--batch-size", "8"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"ladd: error: {cifar}: the labeler was trained on other classes ('0', '1', '2', '3', "
                           "... 10 in all) than the file's ('airplane', 'automobile', 'bird', 'cat', ... 10 in all)")
    assert line.endswith("pass --allow-mismatch to label anyway")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cifar.dla.h5"]

    allowed = runner.invoke(main, [*args, "--allow-mismatch"])
    assert allowed.exit_code == 0, allowed.output
    warnings = [line for line in allowed.stderr.splitlines() if line.startswith("ladd: warning:")]
    assert len(warnings) == 1 and "the labeler was trained on other classes" in warnings[0]
    assert warnings[0].endswith("labeling anyway (--allow-mismatch)")
    assert verify(out) == []


def test_the_same_classes_label_without_a_note(tmp_path, digits_labeler, runner):
    for names in ([str(c) for c in range(10)], None):       # the labeler's names, or a file without names
        src = write_set(tmp_path / f"{names is None}.dla.h5", names)
        result = runner.invoke(main, ["augment", str(src), "--labeler", digits_labeler, "-o",
                                      str(tmp_path / f"{names is None}-la.dla.h5"), "--batch-size", "8"])
        assert result.exit_code == 0 and "warning" not in result.stderr, result.output


def test_a_labeler_whose_data_had_no_names_is_compared_by_count_only(tmp_path, runner):
    digits = load_source("digits")
    np.savez(tmp_path / "unnamed.npz", images=digits.images[:200], labels=digits.labels[:200])
    ckpt = tmp_path / "ckpt"
    trained = runner.invoke(main, ["train-labeler", str(tmp_path / "unnamed.npz"), "-o", str(ckpt), "--arch",
                                   "convnet-d3", "--width", "8", "--epochs", "1", "--val-split", "0"])
    assert trained.exit_code == 0, trained.output
    from ladd_format.labeler.checkpoint import declared_class_names
    lab = load_checkpoint(ckpt / "labeler-e001.safetensors")
    assert lab.meta["class_names_declared"] is False and declared_class_names(lab.meta) is None
    cifar = write_set(tmp_path / "cifar.dla.h5", CIFAR10, "cifar10")
    result = runner.invoke(main, ["augment", str(cifar), "--labeler", str(ckpt / "labeler-e001.safetensors"),
                                  "-o", str(tmp_path / "la.dla.h5"), "--batch-size", "8"])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output


def test_names_compare_up_to_case_and_separators_and_old_checkpoints_count_as_declared():
    from ladd_format.labeler.checkpoint import declared_class_names
    from ladd_format.labeler.sources import same_class_names, same_dataset
    assert same_class_names(["English_springer", "Tench"], ["english springer", "tench"])
    assert not same_class_names(["cat", "dog"], ["dog", "cat"])               # another order is another mapping
    assert not same_class_names(["cat"], ["cat", "dog"])
    assert same_dataset("CIFAR-10", "cifar10") and not same_dataset("cifar10", "cifar100")
    assert declared_class_names({"class_names": ["a", "b"]}) == ["a", "b"]    # no class_names_declared: a 0.1 file
    assert declared_class_names({"class_names": ["0", "1"], "class_names_declared": False}) is None


def test_evaluate_refuses_digits_test_for_a_cifar10_file_before_training(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("LADD_PROGRESS_INTERVAL", "0")
    cifar = write_set(tmp_path / "cifar.dla.h5", CIFAR10, "cifar10")
    args = ["evaluate", str(cifar), "--test", "digits-test", "--mode", "hard", "--epochs", "1", "--seeds", "1",
            "--width", "8"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()                           # no progress line: nothing was trained
    assert line.startswith(f"ladd: error: {cifar}: the test set's classes ('0', '1', '2', '3', ... 10 in all) are "
                           "not the file's ('airplane', 'automobile', 'bird', 'cat', ... 10 in all)")
    assert line.endswith("pass --allow-mismatch to test anyway")
    allowed = runner.invoke(main, [*args, "--allow-mismatch"])
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stderr.splitlines()[0].startswith(f"ladd: warning: {cifar}: the test set's classes")
    assert "testing anyway (--allow-mismatch)" in allowed.stderr.splitlines()[0]


def test_a_test_file_of_another_dataset_is_refused_where_names_are_missing(tmp_path):
    train = write_set(tmp_path / "train.dla.h5", None, "cifar10")
    other = open_test_file(write_set(tmp_path / "svhn.dla.h5", None, "svhn"))
    same = open_test_file(write_set(tmp_path / "c10.dla.h5", None, "CIFAR-10"))
    assert isinstance(other, testset.TestFile) and other.dataset == "svhn" and other.class_names is None
    with pytest.raises(Exception, match="the test set is 'svhn', the file's images come from 'cifar10'"):
        check_test_fits(other, (3, 32, 32), 10, dataset="cifar10")
    note = check_test_fits(other, (3, 32, 32), 10, dataset="cifar10", allow_mismatch=True)
    assert note == "the test set is 'svhn', the file's images come from 'cifar10'"
    assert check_test_fits(same, (3, 32, 32), 10, dataset="cifar10") is None
    assert check_test_fits(other, (3, 32, 32), 10) is None        # the file's dataset unknown: nothing to compare
    assert train.exists()


def test_digits_test_fits_a_digits_file():
    test = load_test_source("digits-test", (3, 32, 32))
    assert test.dataset == "sklearn-digits"
    assert check_test_fits(test, (3, 32, 32), 10, class_names=[str(c) for c in range(10)],
                           dataset="sklearn-digits") is None
    with pytest.raises(Exception, match="the test set is 'sklearn-digits'"):
        check_test_fits(test, (3, 32, 32), 10, dataset="cifar10")      # no names on the file's side: the dataset
