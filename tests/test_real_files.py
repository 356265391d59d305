"""Real files as people hold them: DatasetCondensation results dicts pickled by numpy 1, and the
DD-Ranking DC tensors, converted with no more flags than the data needs.

The real files are read from ``../shared/data`` (the ``shared_data`` fixture: skipped, saying so,
where it is absent). The numpy-1 pickle is also rebuilt here (a results dict saved by today's torch,
its ``data.pkl`` given numpy 1's global name ``numpy.core.multiarray.scalar``), so the behaviour is
tested without the shared folder too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli, ok
from ladd_format import open_dla
from ladd_format.converters.inputs import load_pt
from ladd_format.errors import InputError
from ladd_format.integrity import content_digest

from _upstream import NUMPY1_SCALAR, as_numpy1, pickle_bytes

DC_RESULTS = Path("dc-results") / "res_DC_MNIST_ConvNet_1ipc.pt"
DC_RESULTS_SHA256_START = "b6ef2795"
DDRANKING_DC = Path("ddranking") / "DC-DSA-DM"
#: DC's MNIST normalisation (its utils.get_dataset), which the mnist preset holds
MNIST = ["--mean", "0.1307", "--std", "0.3081"]


def independent_load(path: Path) -> dict:
    """The results dict loaded with an allow-list written here (numpy's scalar under numpy 1's name,
    dtype and float64's dtype class), not with the converter's."""
    scalar = np.float64(0).__reduce__()[0]
    with torch.serialization.safe_globals([(scalar, "numpy.core.multiarray.scalar"), np.dtype,
                                           type(np.dtype("float64"))]):
        return torch.load(path, map_location="cpu", weights_only=True)


def numpy1_results(path: Path, experiments: int = 2) -> Path:
    """A DC results dict as numpy 1 pickled it: saved by today's torch, then its data.pkl's scalar
    global renamed to numpy 1's (the GLOBAL opcode is newline-terminated text: no length to fix)."""
    gen = torch.Generator().manual_seed(0)
    data = [[torch.randn(20, 3, 8, 8, generator=gen), torch.arange(20) % 10] for _ in range(experiments)]
    modern = path.with_suffix(".numpy2")
    torch.save({"data": data, "accs_all_exps": {"ConvNet": [np.float64(0.5), np.float64(0.25)]}}, modern)
    as_numpy1(modern, path)
    modern.unlink()
    return path


@pytest.fixture
def numpy1(tmp_path) -> Path:
    return numpy1_results(tmp_path / "res_DC_CIFAR10_ConvNet_2ipc.pt")


# -- numpy 1's pickles, rebuilt ------------------------------------------------------------------------
def test_a_numpy1_results_dict_loads_with_its_scalars(numpy1):
    raw = pickle_bytes(numpy1)
    assert NUMPY1_SCALAR in raw and b"numpy._core" not in raw          # the fixture is numpy 1's spelling
    accs = load_pt(numpy1, allow_numpy_scalars=True)["accs_all_exps"]["ConvNet"]
    assert accs == [0.5, 0.25] and all(type(a) is np.float64 for a in accs)


@pytest.mark.parametrize("fmt", ["dc", "auto"])
def test_a_numpy1_results_dict_converts(tmp_path, runner, numpy1, fmt):
    out = tmp_path / "o.dla.h5"
    result = ok(runner, "convert", fmt, numpy1, "-o", out, "--keep-float", "--experiment", "1")
    if fmt == "auto":
        assert "auto: detected dc (a res_*.pt results file)" in result.output
    expected = independent_load(numpy1)["data"][1]
    with open_dla(out) as f:
        assert f.attrs["distillation"] == "dc" and f.attrs["source_dataset"] == "cifar10"
        assert np.array_equal(f.images(), expected[0].numpy()) and np.array_equal(f.labels(), expected[1].numpy())


def test_a_refused_global_is_one_whole_line_without_torch_advice(tmp_path, runner):
    from fractions import Fraction

    src = tmp_path / "res_DC_CIFAR10_ConvNet_1ipc.pt"
    torch.save({"data": [[torch.zeros(10, 3, 4, 4), torch.arange(10)]], "accs_all_exps": {"x": [Fraction(1, 2)]}},
               src)
    out = tmp_path / "o.dla.h5"
    result = cli(runner, "convert", "dc", src, "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 1 and not out.exists()
    (line,) = result.output.strip().splitlines()
    assert line == (f"ladd: error: {src}: refused: the pickle asks for the global fractions.Fraction, which is not "
                    "on the allow-list; nothing was executed")
    assert "add_safe_globals" not in line and "torch.serialization" not in line


def test_the_allow_list_is_exact(numpy1):
    """numpy's scalar under its two pickle names, numpy.dtype and four dtype classes: nothing else (an
    array pickle, numpy's _reconstruct, stays refused)."""
    from ladd_format.converters.inputs import NUMPY_SCALAR_NAMES, _numpy_scalar_globals

    found = _numpy_scalar_globals()
    assert [name for item in found if isinstance(item, tuple) for name in item[1:]] == list(NUMPY_SCALAR_NAMES)
    assert np.dtype in found and len(found) == 2 + 1 + 4
    src = numpy1.with_name("array.pt")
    torch.save({"a": np.zeros(3)}, src)
    with pytest.raises(InputError, match="the global numpy._core.multiarray._reconstruct, which is not on"):
        load_pt(src, allow_numpy_scalars=True)


# -- the real files ---------------------------------------------------------------------------------
@pytest.fixture
def real_results(shared_data) -> Path:
    path = shared_data / DC_RESULTS
    if not path.is_file():
        pytest.skip(f"{path} is not there (../shared/data holds other files)")
    return path


def test_the_real_results_file_is_numpy1s(real_results):
    assert NUMPY1_SCALAR in pickle_bytes(real_results)


@pytest.mark.parametrize("fmt", ["dc", "auto"])
def test_the_real_dc_results_file_converts(tmp_path, runner, real_results, fmt):
    exact = tmp_path / "exact.dla.h5"
    result = ok(runner, "convert", fmt, real_results, "-o", exact, *MNIST, "--keep-float")
    assert "converted experiment 0 of 5 (--experiment)" in result.output
    expected = independent_load(real_results)
    images, labels = expected["data"][0]
    with open_dla(exact) as f:
        assert f.attrs["distillation"] == "dc" and f.num_images == 10 and f.image_shape == (1, 28, 28)
        assert np.array_equal(f.images(), images.numpy()) and np.array_equal(f.labels(), labels.numpy())
        assert f.provenance["inputs"][0]["sha256"].startswith(DC_RESULTS_SHA256_START)
    quantised = tmp_path / "u8.dla.h5"
    ok(runner, "convert", fmt, real_results, "-o", quantised, "--experiment", "4")    # no flags: MNIST is named
    with open_dla(quantised) as f:
        assert f.image_dtype == np.uint8 and np.array_equal(f.labels(), expected["data"][4][1].numpy())
        assert f.attrs["source_dataset"] == "mnist" and f.class_names == [str(c) for c in range(10)]
        assert np.allclose(f.mean, [0.1307]) and np.allclose(f.std, [0.3081])
    accs = load_pt(real_results, allow_numpy_scalars=True)["accs_all_exps"]
    assert set(accs) >= {"ConvNet", "MLP"} and all(type(a) is np.float64 for a in accs["ConvNet"])


@pytest.fixture
def real_ddranking_dc(shared_data) -> Path:
    folder = shared_data / DDRANKING_DC
    if not (folder / "images_DC_CIFAR10_1_best.pt").is_file():
        pytest.skip(f"the DD-Ranking DC pair is not in {folder}")
    return folder


@pytest.mark.parametrize("fmt", ["ddranking", "folder", "npz"])
def test_the_real_ddranking_dc_pair_converts_and_comes_back_from_every_export(tmp_path, runner, real_ddranking_dc,
                                                                             fmt):
    """No flags at all: the name gives method and dataset; each export converts back, with no flags,
    to the same content (content digest), DC as dc."""
    first = tmp_path / "first.dla.h5"
    ok(runner, "convert", "auto", real_ddranking_dc, "-o", first)
    exported = tmp_path / ("out.npz" if fmt == "npz" else "out")
    ok(runner, "export", first, "--format", fmt, "-o", exported)
    back = tmp_path / "back.dla.h5"
    ok(runner, "convert", "auto", exported, "-o", back)
    assert content_digest(back) == content_digest(first)
    with open_dla(back) as f:
        assert f.attrs["distillation"] == "dc" and f.attrs["source_dataset"] == "cifar10"
