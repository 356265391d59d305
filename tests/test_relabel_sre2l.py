"""Reading SRe2L/LPLD relabel folders (``ladd_format.relabel``): folders written as upstream writes them
(numpy-1-era pickles included) come back field for field; the sampler replay matches torch's own
``RandomSampler`` + ``BatchSampler``; crop fractions become the pixels Pillow crops; hostile folders
are refused in one line, nothing returned."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from torchvision.transforms import functional as TF

from ladd_format.errors import InputError
from ladd_format.relabel import (fractions_to_pixels, read_relabel_folder, scan_relabel_folder, sre2l_association,
                                 sre2l_indices)
from ladd_format.relabel.replay import sre2l_epoch_orders

from _upstream import NUMPY1_SCALAR, NUMPY2_SCALAR, pickle_bytes, write_relabel_folder


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text, text
    for part in parts:
        assert part in text, text
    return text


# -- folders as upstream writes them ----------------------------------------------------------------
@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2", "numpy1"])
@pytest.mark.parametrize("mix", ["cutmix", "mixup", "none"])
def test_an_upstream_folder_reads_back_field_for_field(tmp_path, mix, numpy1):
    written = write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=3, classes=7, mix=mix,
                                   numpy1=numpy1, crop=16)
    raw = pickle_bytes(tmp_path / "fkd" / "epoch_1" / "batch_2.tar")
    if mix == "cutmix":       # the box's numpy ints: the fixture names the scalar as that numpy did
        assert (NUMPY1_SCALAR in raw) == numpy1 and (NUMPY2_SCALAR in raw) != numpy1
    folder, batches = read_relabel_folder(tmp_path / "fkd", crop_size=16)
    assert (folder.layout, folder.epochs, folder.batch_size, folder.batch_counts) == ("sre2l", 3, 4, (3, 3, 3))
    assert (folder.last_batch_size, folder.num_images, folder.num_classes) == (2, 10, 7)
    assert folder.logits_dtype == np.float16 and folder.mix == mix and folder.stored_indices is None
    assert [(b.epoch, b.batch) for b in batches] == sorted(written.batches)
    for got in batches:
        coords, flip, index, lam, box, logits = written.batches[got.epoch, got.batch]
        assert got.coords.dtype == np.float32 and np.array_equal(got.coords, coords.numpy())
        assert got.flip.dtype == np.bool_ and np.array_equal(got.flip, flip.numpy())
        assert got.logits.dtype == np.float16 and np.array_equal(got.logits.view(np.uint16),
                                                                  logits.numpy().view(np.uint16))
        assert got.indices is None
        if mix == "none":
            assert got.mix_index is None and got.mix_lam is None and got.mix_box is None
            continue
        assert got.mix_index.dtype == np.int64 and np.array_equal(got.mix_index, index.numpy())
        assert type(got.mix_lam) is float and got.mix_lam == lam
        assert got.mix_box == (None if box is None else tuple(int(v) for v in box))


def test_the_stream_streams_one_batch_at_a_time(tmp_path):
    written = write_relabel_folder(tmp_path / "fkd", num_images=9, batch_size=3, epochs=2)
    folder = scan_relabel_folder(tmp_path / "fkd")
    assert folder.last_batch_size == 3 and folder.num_images == 9
    got = list(folder.batches(range(1, 2)))
    assert [(b.epoch, b.batch) for b in got] == [(1, 0), (1, 1), (1, 2)]
    assert np.array_equal(folder.read_batch(0, 2).coords, written.batches[0, 2][0].numpy())
    with pytest.raises(InputError, match="no batch 3 in epoch 0"):
        folder.read_batch(0, 3)


def test_the_association_is_the_sampler_that_wrote_the_folder(tmp_path):
    written = write_relabel_folder(tmp_path / "fkd", num_images=11, batch_size=4, epochs=4)
    folder = scan_relabel_folder(tmp_path / "fkd")
    association = sre2l_association(folder, num_images=11, batch_size=4)
    assert association.shape == (4, 11) and association.dtype == np.int64
    for e in range(4):
        assert np.array_equal(association[e], written.orders[e])
    assert not np.array_equal(association[1], association[0])


def test_a_folder_the_association_cannot_fit_is_refused(tmp_path):
    write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=2)
    folder = scan_relabel_folder(tmp_path / "fkd")
    with pytest.raises(InputError) as exc:
        sre2l_association(folder, num_images=12)
    one_line(exc, "the batches hold 10 images (3 batches of 4, the last 2) but the image folder has 12")
    with pytest.raises(InputError) as exc:
        sre2l_association(folder, batch_size=5)
    one_line(exc, "batches of 4", "not 5")
    with pytest.raises(InputError) as exc:
        scan_relabel_folder(tmp_path / "fkd", num_images=9)
    one_line(exc, "the batches hold 10 images", "9 were given")


# -- the sampler replay against torch's own ---------------------------------------------------------
def torch_sampler_orders(n: int, b: int, epochs: int, seed: int) -> list[list[int]]:
    """SRe2L's association as torch itself gives it: one generator, one sampler, E passes."""
    sampler = RandomSampler(range(n), generator=torch.Generator().manual_seed(seed))
    batches = BatchSampler(sampler, b, drop_last=False)
    out = []
    for _ in range(epochs):
        epoch = list(batches)
        assert all(len(x) == b for x in epoch[:-1]) and 1 <= len(epoch[-1]) <= b and len(epoch) == -(-n // b)
        out.append([i for x in epoch for i in x])
    return out


class Index(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


@pytest.mark.parametrize("n, b, epochs", [(10, 4, 5), (257, 64, 6), (50, 3, 4), (5, 8, 2),     # n % B != 0
                                          (12, 4, 4), (7, 7, 3), (1, 1, 3), (1000, 100, 3)])
def test_the_replay_is_torchs_random_sampler_over_epochs(n, b, epochs):
    replay = sre2l_indices(n, b, epochs)
    assert replay.shape == (epochs, n) and replay.dtype == np.int64
    assert replay.tolist() == torch_sampler_orders(n, b, epochs, 42)
    other = sre2l_indices(n, b, epochs, seed=7)
    assert other.tolist() == torch_sampler_orders(n, b, epochs, 7)


def test_the_replay_is_what_a_dataloader_gives():
    n, b, epochs = 23, 5, 4
    loader = DataLoader(Index(n), batch_size=b, sampler=RandomSampler(Index(n), generator=torch.Generator()
                                                                      .manual_seed(42)))
    truth = [torch.cat(list(loader)).tolist() for _ in range(epochs)]
    assert sre2l_indices(n, b, epochs).tolist() == truth
    assert [order.tolist() for order in sre2l_epoch_orders(n, epochs)] == truth


def test_one_randperm_per_epoch_matches_epoch_0_only():
    """The trap the replay avoids: RandomSampler draws two permutations per pass."""
    n, epochs = 10, 3
    g = torch.Generator().manual_seed(42)
    naive = [torch.randperm(n, generator=g).tolist() for _ in range(epochs)]
    truth = torch_sampler_orders(n, 4, epochs, 42)
    assert naive[0] == truth[0] and naive[1] != truth[1]
    assert sre2l_indices(n, 4, epochs).tolist() == truth


@pytest.mark.parametrize("args, part", [((0, 4, 3), "image count"), ((10, 0, 3), "batch size"),
                                        ((10, 4, 0), "epoch count"), ((10, 4, True), "epoch count"),
                                        ((10, 4, 3.0), "epoch count"), ((10, 4, 3, -1), "sampler seed")])
def test_replay_arguments_are_bounded(args, part):
    with pytest.raises(InputError) as exc:
        sre2l_indices(*args)
    one_line(exc, part)


def test_the_replay_refuses_more_slots_than_it_holds(monkeypatch):
    from ladd_format.relabel import replay

    monkeypatch.setattr(replay, "MAX_SLOTS", 100)
    assert sre2l_indices(50, 5, 2).shape == (2, 50)
    with pytest.raises(InputError) as exc:
        sre2l_indices(50, 5, 3)
    one_line(exc, "more than the 100 slots")


# -- LPLD -------------------------------------------------------------------------------------------
def test_an_lpld_folder_reads_its_stored_order(tmp_path):
    written = write_relabel_folder(tmp_path / "lpld", num_images=10, batch_size=3, lpld_steps=7)
    folder, batches = read_relabel_folder(tmp_path / "lpld", num_images=10)
    assert folder.layout == "lpld" and folder.batch_counts == (3, 3, 1) and folder.last_batch_size == 3
    assert folder.num_images == 10 and len(batches) == 7
    for e in range(3):
        assert np.array_equal(folder.stored_indices[e], written.orders[e])
    for got in batches:
        assert np.array_equal(got.indices, written.orders[got.epoch][got.batch * 3:(got.batch + 1) * 3])
        assert np.array_equal(got.logits, written.batches[got.epoch, got.batch][5].numpy())
    assert sre2l_association(folder) is folder.stored_indices
    # every full epoch's images are 9 of the 10 (drop_last), each once
    assert all(len(set(o.tolist())) == 9 for o in folder.stored_indices[:2])


def test_an_lpld_folder_with_whole_epochs(tmp_path):
    write_relabel_folder(tmp_path / "lpld", num_images=9, batch_size=3, lpld_steps=6)
    folder = scan_relabel_folder(tmp_path / "lpld")
    assert folder.batch_counts == (3, 3, 3) and folder.num_images is None


def test_an_lpld_index_beyond_the_images_is_refused(tmp_path):
    write_relabel_folder(tmp_path / "lpld", num_images=10, batch_size=3, lpld_steps=7)
    path = tmp_path / "lpld" / "sampler_indices_epoch.json"
    order = json.loads(path.read_text())
    order["1"][4] = 10
    order["1"][5] = 11 if order["1"][5] != 11 else 12
    path.write_text(json.dumps(order))
    with pytest.raises(InputError) as exc:
        scan_relabel_folder(tmp_path / "lpld", num_images=10)
    one_line(exc, str(path), "epoch 1: index 1", "is outside 0..9")
    with pytest.raises(InputError) as exc:          # without M: beyond what 3 batches of 3 (drop_last) allow
        order["1"][4], order["1"][5] = 100, 0
        path.write_text(json.dumps(order))
        scan_relabel_folder(tmp_path / "lpld")
    one_line(exc, "index 100 is outside 0..10")


@pytest.mark.parametrize("edit, part", [
    (lambda o: o.pop("2"), "epoch '2' has no list"),
    (lambda o: o.update({"3": []}), "names epoch '3', which has no folder"),
    (lambda o: o["0"].pop(), "epoch 0: lists 8 indices where its 3 batch files hold 9 slots"),
    (lambda o: o["0"].__setitem__(0, 1.5), "epoch 0: indices must be integers"),
    (lambda o: o["0"].__setitem__(0, True), "epoch 0: indices must be integers"),
    (lambda o: o["0"].__setitem__(0, o["0"][1]), "epoch 0: an index appears twice"),
    (lambda o: o["0"].__setitem__(0, -1), "index -1 is outside"),
])
def test_a_bad_lpld_order_is_one_line(tmp_path, edit, part):
    write_relabel_folder(tmp_path / "lpld", num_images=10, batch_size=3, lpld_steps=7)
    path = tmp_path / "lpld" / "sampler_indices_epoch.json"
    order = json.loads(path.read_text())
    edit(order)
    path.write_text(json.dumps(order))
    with pytest.raises(InputError) as exc:
        read_relabel_folder(tmp_path / "lpld")
    one_line(exc, str(path), part)


def test_lpld_json_that_is_not_json_or_not_an_object(tmp_path):
    write_relabel_folder(tmp_path / "lpld", num_images=10, batch_size=3, lpld_steps=7)
    path = tmp_path / "lpld" / "sampler_indices_epoch.json"
    for text, part in (("{", "not readable JSON"), ("[1, 2]", "must be an object"), ("[" * 100_000, "not readable")):
        path.write_text(text)
        with pytest.raises(InputError) as exc:
            scan_relabel_folder(tmp_path / "lpld")
        one_line(exc, part)


def test_an_lpld_epoch_without_the_batches_its_json_lists_is_refused(tmp_path):
    write_relabel_folder(tmp_path / "lpld", num_images=10, batch_size=3, lpld_steps=7)
    (tmp_path / "lpld" / "epoch_1" / "batch_2.tar").unlink()
    with pytest.raises(InputError) as exc:
        scan_relabel_folder(tmp_path / "lpld")
    one_line(exc, "epoch 1: lists 9 indices where its 2 batch files hold 6 slots")


# -- hostile folders --------------------------------------------------------------------------------
@pytest.fixture
def fkd(tmp_path) -> Path:
    write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=3, classes=7, crop=16)
    return tmp_path / "fkd"


def refused(root: Path, *parts: str, **kwargs) -> str:
    with pytest.raises(InputError) as exc:
        read_relabel_folder(root, **kwargs)
    return one_line(exc, *parts)


def resave(path: Path, edit) -> None:
    from ladd_format.converters.inputs import load_pt

    saved = load_pt(path, allow_numpy_scalars=True, scalar_dtypes=("int64",))
    edit(saved)
    torch.save(saved, path)


def test_a_missing_epoch_is_refused(fkd):
    shutil.rmtree(fkd / "epoch_1")
    refused(fkd, str(fkd), "epoch_0..epoch_1 without a gap; epoch_1 is missing")


def test_a_missing_batch_is_refused(fkd):
    (fkd / "epoch_2" / "batch_1.tar").unlink()
    refused(fkd, str(fkd / "epoch_2"), "batch_0..batch_1.tar without a gap; batch_1.tar is missing")


def test_an_epoch_with_fewer_batches_is_refused(fkd):
    (fkd / "epoch_2" / "batch_2.tar").unlink()
    refused(fkd, "epoch_2 holds 2 batch files where epoch_0 holds 3")


def test_unequal_batches_are_refused(fkd):
    path = fkd / "epoch_1" / "batch_1.tar"

    def shorten(saved):
        saved[0], saved[1], saved[5] = saved[0][:3], saved[1][:3], saved[5][:3]
        saved[2] = torch.randperm(3)
    resave(path, shorten)
    refused(fkd, str(path), "holds 3 slots where the folder's batches hold 4")


def test_a_last_batch_of_another_length_in_a_later_epoch_is_refused(fkd):
    path = fkd / "epoch_2" / "batch_2.tar"

    def shorten(saved):
        saved[0], saved[1], saved[5] = saved[0][:1], saved[1][:1], saved[5][:1]
        saved[2] = torch.randperm(1)
    resave(path, shorten)
    refused(fkd, str(path), "holds 1 slots where the folder's batches hold 2")


def test_a_pickle_asking_for_another_global_is_refused(fkd):
    path = fkd / "epoch_2" / "batch_0.tar"
    resave(path, lambda saved: saved.__setitem__(3, Fraction(1, 2)))
    refused(fkd, str(path), "refused: the pickle asks for the global fractions.Fraction", "nothing was executed")


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))          # os's own function, as an os.system payload would be


def test_a_pickle_that_would_run_code_is_refused_unexecuted(fkd, tmp_path):
    marker = tmp_path / "ran"
    path = fkd / "epoch_0" / "batch_1.tar"
    resave(path, lambda saved: saved.__setitem__(3, Payload(marker)))
    assert f"{os.name}\nmkdir".encode() in pickle_bytes(path)
    refused(fkd, str(path), f"refused: the pickle asks for the global {os.name}.mkdir", "nothing was executed")
    assert not marker.exists()


def test_an_array_pickle_is_refused(fkd):
    """The allow-list holds numpy's scalar, not its array reconstructor."""
    path = fkd / "epoch_0" / "batch_0.tar"
    resave(path, lambda saved: saved.__setitem__(4, np.array([1, 2, 3, 4])))
    refused(fkd, str(path), "refused: the pickle asks for the global numpy", "not on the allow-list")


def test_logits_of_another_class_count_in_one_file_are_refused(fkd):
    path = fkd / "epoch_2" / "batch_1.tar"
    resave(path, lambda saved: saved.__setitem__(5, torch.zeros(4, 8, dtype=torch.float16)))
    refused(fkd, str(path), "logits have 8 classes where epoch_0/batch_0's have 7")


def test_logits_of_another_dtype_in_one_file_are_refused(fkd):
    path = fkd / "epoch_1" / "batch_0.tar"
    resave(path, lambda saved: saved.__setitem__(5, saved[5].float()))
    refused(fkd, str(path), "logits are float32 where epoch_0/batch_0's are float16")


@pytest.mark.parametrize("row, part", [([0.5, 0.0, 0.6, 0.5], "top + height <= 1"),
                                       ([0.0, -0.25, 0.5, 0.5], "fractions in [0, 1]"),
                                       ([0.0, 0.0, 0.0, 0.5], "height and width > 0"),
                                       ([0.0, 0.5, 0.5, 0.75], "left + width <= 1"),
                                       ([float("nan"), 0.0, 0.5, 0.5], "NaN or infinity")])
def test_coords_outside_the_image_are_refused(fkd, row, part):
    path = fkd / "epoch_1" / "batch_2.tar"

    def edit(saved):
        saved[0][1] = torch.tensor(row)
    resave(path, edit)
    refused(fkd, str(path), part)


def test_coords_at_the_edge_within_float32_rounding_are_accepted(fkd):
    path = fkd / "epoch_0" / "batch_2.tar"
    top = np.float32(1 / 3)
    height = np.float32(2 / 3)
    assert float(top) + float(height) > 1          # the fractions of 1 + 2 = 3 rows sum past 1 in float32

    def edit(saved):
        saved[0][0] = torch.tensor([top, 0.0, height, 1.0])
    resave(path, edit)
    folder, batches = read_relabel_folder(fkd)
    assert batches[2].coords[0, 0] == top


@pytest.mark.parametrize("index, lam, box, part", [
    (torch.tensor([0, 0, 1, 2]), 0.5, [1, 2, 3, 4], "permutation of the 4 batch slots"),
    (torch.tensor([0, 1, 2, 3], dtype=torch.int32), 0.5, [1, 2, 3, 4], "must be int64, found int32"),
    (torch.randperm(4), 1.5, [1, 2, 3, 4], "mix lambda (element 3) must be a float in [0, 1]"),
    (torch.randperm(4), 0.5, [3, 2, 1, 4], "is not a half-open box within the 16x16 crop"),
    (torch.randperm(4), 0.5, [0, 0, 17, 4], "is not a half-open box within the 16x16 crop"),
    (torch.randperm(4), 0.5, [0, 0, 1.5, 4], "four integers (row1, col1, row2, col2)"),
    (torch.randperm(4), 0.5, None, "mixes by mixup where epoch_0/batch_0 mixes by cutmix"),
    (None, 0.5, [1, 2, 3, 4], "must be all set (CutMix)"),
])
def test_a_bad_mix_is_refused(fkd, index, lam, box, part):
    path = fkd / "epoch_1" / "batch_1.tar"

    def edit(saved):
        saved[2], saved[3], saved[4] = index, lam, box
    resave(path, edit)
    refused(fkd, str(path), part, crop_size=16)


WHOLE = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 4)
FLIPS = torch.ones(4, dtype=torch.bool)


@pytest.mark.parametrize("obj, part", [
    ({"coords": 1}, "found dict"),
    ([1, 2, 3], "found a list of 3"),
    ([WHOLE, [True] * 4, None, None, None, torch.zeros(4, 7)], "flip (element 1) must be a dense tensor, found list"),
    ([WHOLE, FLIPS, None, None, None, torch.zeros(4, 7, dtype=torch.bfloat16)], "must be float16 or float32"),
    ([WHOLE.double(), FLIPS, None, None, None, torch.zeros(4, 7)], "coords (element 0) must be float32"),
    ([WHOLE, FLIPS, None, None, None, torch.zeros(4, 7).to_sparse()], "must be a dense tensor"),
    ([WHOLE, FLIPS, None, None, None, torch.full((4, 7), float("inf"))], "logits (element 5) hold NaN or infinity"),
])
@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
def test_a_file_that_is_not_the_six_element_list_is_refused(fkd, obj, part):
    path = fkd / "epoch_0" / "batch_0.tar"
    torch.save(obj, path)
    refused(fkd, str(path), part)


def test_a_truncated_batch_file_is_one_line(fkd):
    path = fkd / "epoch_2" / "batch_2.tar"
    path.write_bytes(path.read_bytes()[:200])
    refused(fkd, str(path), "not a readable torch file")


def test_an_epoch_count_above_the_bound_is_refused_before_reading(tmp_path):
    write_relabel_folder(tmp_path / "fkd", num_images=4, batch_size=4, epochs=4)
    assert scan_relabel_folder(tmp_path / "fkd", max_epochs=4).epochs == 4
    refused(tmp_path / "fkd", "holds 4 epoch folders, more than the 3 accepted", max_epochs=3)
    for e in range(4, 80):                            # the listing itself stops past the bound and some slack
        (tmp_path / "fkd" / f"epoch_{e}").mkdir()
    refused(tmp_path / "fkd", "holds more than 67 entries: refused before reading further", max_epochs=3)


@pytest.mark.parametrize("name, part", [("epoch_01", "leading zero"), ("batch_x.tar", "unexpected entry")])
def test_odd_names_are_refused(fkd, name, part):
    if name.startswith("epoch"):
        (fkd / name).mkdir()
    else:
        (fkd / "epoch_0" / name).write_bytes(b"")
    refused(fkd, part)


def test_not_a_relabel_folder(tmp_path):
    (tmp_path / "images").mkdir()
    refused(tmp_path / "images", "no epoch_{e} folders")
    refused(tmp_path / "absent", "cannot read the folder")
    (tmp_path / "f").write_text("x")
    refused(tmp_path / "f", "is not a folder")


def test_a_folder_larger_than_asked_is_refused_before_loading(fkd):
    folder = scan_relabel_folder(fkd)
    refused(fkd, f"hold {folder.file_bytes():,} bytes, more than the 1,000 read at once", max_bytes=1000)


# -- crop fractions to pixels -----------------------------------------------------------------------
def test_fractions_become_the_pixels_upstream_drew(tmp_path):
    written = write_relabel_folder(tmp_path / "fkd", num_images=10, batch_size=4, epochs=3)
    folder = scan_relabel_folder(tmp_path / "fkd")
    association = sre2l_association(folder)
    for batch in folder.batches():
        slots = association[batch.epoch, batch.batch * 4:batch.batch * 4 + len(batch.flip)]
        pixels = fractions_to_pixels(batch.coords, written.sizes[slots])
        assert np.array_equal(pixels, written.pixels[batch.epoch, batch.batch])


def pil_crop(coords: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The rows and columns torchvision's resized_crop hands Pillow, as SRe2L's loader computes them."""
    h, w = size
    image = Image.fromarray((np.arange(h * w) % 251).astype(np.uint8).reshape(h, w))
    c = [float(v) for v in coords]
    return np.asarray(TF.crop(image, c[0] * h, c[1] * w, c[2] * h, c[3] * w))


@pytest.mark.parametrize("coords, size", [([0.375, 0.0, 0.375, 1.0], (4, 4)),      # top 1.5, bottom 3.0
                                          ([0.625, 0.125, 0.375, 0.625], (4, 8)),  # halves on every edge
                                          ([0.1, 0.2, 0.5, 0.3], (37, 23))])
def test_pixels_are_pillows_crop(coords, size):
    coords = np.array([coords], dtype=np.float32)
    top, left, height, width = fractions_to_pixels(coords, size)[0]
    h, w = size
    expected = (np.arange(h * w) % 251).astype(np.uint8).reshape(h, w)[top:top + height, left:left + width]
    assert np.array_equal(pil_crop(coords[0], size), expected)
    if coords[0, 0] == np.float32(0.375):
        assert (top, height) == (2, 1)      # edges rounded half to even, not round(1.5) = 2 rows


@pytest.mark.parametrize("coords, size, part", [([0.5, 0.0, 0.6, 1.0], (10, 10), "outside its 10x10 image"),
                                                ([0.0, 0.0, 0.01, 1.0], (10, 10), "is empty or outside"),
                                                ([0.0, 0.0, 1.0, 1.0], (0, 10), "image sides must be")])
def test_boxes_outside_the_image_are_refused(coords, size, part):
    with pytest.raises(InputError) as exc:
        fractions_to_pixels(np.array([coords], dtype=np.float32), size)
    one_line(exc, part)


def test_a_batch_file_larger_than_the_bound_is_refused_unloaded(fkd, monkeypatch):
    from ladd_format.relabel import sre2l

    size = (fkd / "epoch_0" / "batch_1.tar").stat().st_size
    monkeypatch.setattr(sre2l, "MAX_BATCH_FILE_BYTES", size - 1)
    refused(fkd, str(fkd / "epoch_0"), "batch_", f"more than the {size - 1:,} a batch file may")


@pytest.mark.parametrize("kwargs, part", [({"num_images": 0}, "the image count must be an integer"),
                                          ({"num_images": True}, "the image count must be an integer"),
                                          ({"crop_size": 0}, "the crop size must be"),
                                          ({"crop_size": (16, 16, 3)}, "the crop size must be")])
def test_scan_arguments_are_checked(fkd, kwargs, part):
    refused(fkd, part, **kwargs)


def test_the_allow_list_holds_int64_scalars_only(fkd):
    """The box's numpy.int64 loads; a numpy float64 (which no upstream batch file holds) does not."""
    path = fkd / "epoch_1" / "batch_0.tar"
    resave(path, lambda saved: saved.__setitem__(3, np.float64(0.5)))
    refused(fkd, str(path), "refused: the pickle asks for the global numpy", "Float64DType", "nothing was executed")
