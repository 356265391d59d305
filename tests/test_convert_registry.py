"""Converters describe themselves: the registry, ``sniff`` on every layout, auto's stated order, the
options each format reads (others refused), the one ``finish`` (same defaults for every format), and
the deprecated ``--k``/``--topk-values``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ladd_cli.main import main
from ladd_format import open_dla, verify
from ladd_format.converters import (KINDS, ConvertOptions, Converter, Option, auto, check_options, convert, converter_names,
                                    get_converter)
from ladd_format.errors import InputError

from conftest import make_arrays
from test_convert_images import write_imagefolder, write_rded, write_run, write_sre2l

FORMATS = [name for name in converter_names() if name != "auto"]


def cli(runner, *args):
    result = runner.invoke(main, ["convert", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


# -- the registry -------------------------------------------------------------------------------
def test_every_converter_declares_itself():
    assert set(converter_names()) == {"auto", "datm", "dc", "folder", "glad", "mtt", "npz", "rded", "sre2l",
                                      "tensors", "tesla"}
    fields = set(ConvertOptions.__dataclass_fields__)
    for name in converter_names():
        conv = get_converter(name)
        assert isinstance(conv, Converter) and conv.name == name
        assert conv.summary and "\n" not in conv.summary and conv.looks_for
        assert {"overwrite", "dataset", "mean", "std"} <= conv.option_names
        for option in conv.options:          # common options are ConvertOptions fields, the others format options
            assert isinstance(option, Option) and (option.name in fields) == option.common, option
            assert option.kind in KINDS and option.flag.startswith("--")


def test_convert_help_lists_the_formats_with_their_summaries(runner):
    result = runner.invoke(main, ["convert", "--help"])
    assert result.exit_code == 0
    for name in converter_names():
        assert f"{name}  " in result.output and get_converter(name).summary in result.output


# -- sniff: each recognises its own layout, no other claims it ---------------------------------------
def layout(tmp_path, kind):
    if kind in ("mtt", "glad", "datm", "datm-no-lr", "tesla", "dc", "tensors"):
        return write_run(tmp_path / "run", kind)
    if kind == "glad-file":
        return write_run(tmp_path / "run", "glad") / "images_00500.pt"
    if kind == "mtt-file":
        return write_run(tmp_path / "run", "mtt") / "images_500.pt"
    if kind == "dc-file":
        return next(write_run(tmp_path / "run", "dc").glob("res_*.pt"))
    if kind.startswith("ddranking"):
        return ddranking_layout(tmp_path, kind)
    if kind == "npz":
        images, labels, _ = make_arrays(4)
        np.savez(tmp_path / "a.npz", images=images, labels=labels)
        return tmp_path / "a.npz"
    if kind == "sre2l":
        write_sre2l(tmp_path / "exp", side=8)
        return tmp_path / "exp"
    if kind.startswith("rded"):
        write_rded(tmp_path / "exp", side=8)
        return tmp_path / "exp" / "syn_data" if kind == "rded-syn" else tmp_path / "exp"
    if kind == "folder":
        write_imagefolder(tmp_path / "tree")
        return tmp_path / "tree"
    raise AssertionError(kind)


def ddranking_layout(tmp_path, kind):
    """DD-Ranking's published forms: unsuffixed images.pt + labels.pt (+ lr.pt) in
    ``<DATASET>/IPC<k>/``, and the DC-DSA-DM ``images_<M>_<D>_<ipc>_best.pt`` tensor pairs."""
    x = torch.zeros(20, 3, 4, 4)
    if kind.startswith("ddranking-dc"):
        folder = tmp_path / "result"
        folder.mkdir()
        torch.save(x, folder / "images_DSA_CIFAR10_2_best.pt")
        torch.save(torch.arange(20) % 10, folder / "labels_DSA_CIFAR10_2_best.pt")
        return folder / "images_DSA_CIFAR10_2_best.pt" if kind.endswith("-file") else folder
    folder = tmp_path / "distilled" / "CIFAR10" / "IPC2"
    folder.mkdir(parents=True)
    torch.save(x, folder / "images.pt")
    logits = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    labels = {"ddranking-datm": logits, "ddranking-datm-file": logits, "ddranking-logits": logits,
              "ddranking-tesla": torch.softmax(logits, 1), "ddranking-tensors": torch.arange(20) % 10}[kind]
    torch.save(labels, folder / "labels.pt")
    if kind in ("ddranking-datm", "ddranking-datm-file"):
        torch.save(torch.tensor(0.01), folder / "lr.pt")
    return folder / "images.pt" if kind.endswith("-file") else folder


LAYOUTS = [("mtt", "mtt"), ("mtt-file", "mtt"), ("glad", "glad"), ("glad-file", "glad"), ("datm", "datm"),
           ("datm-no-lr", "datm"), ("tesla", "tesla"), ("tensors", "tensors"), ("dc", "dc"), ("dc-file", "dc"),
           ("npz", "npz"), ("sre2l", "sre2l"), ("rded", "rded"), ("rded-syn", "rded"), ("folder", "folder"),
           ("ddranking-datm", "datm"), ("ddranking-datm-file", "datm"), ("ddranking-logits", "datm"),
           ("ddranking-tesla", "tesla"), ("ddranking-tensors", "tensors"), ("ddranking-dc", "dc"),
           ("ddranking-dc-file", "dc")]


@pytest.mark.parametrize("kind,expected", LAYOUTS, ids=[k for k, _ in LAYOUTS])
def test_sniff_matrix(tmp_path, kind, expected):
    src = layout(tmp_path, kind)
    claims = {name: get_converter(name).sniff(src) for name in FORMATS}
    assert claims[expected], f"{expected} does not recognise its own layout {kind}"
    assert [name for name, reason in claims.items() if reason] == [expected], claims
    assert auto.detect(src) == (expected, claims[expected])


def test_sniff_never_raises_on_odd_paths(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for path in (tmp_path / "missing", tmp_path / "file.txt", tmp_path):
        assert all(get_converter(name).sniff(path) is None for name in FORMATS)


# -- auto's order -----------------------------------------------------------------------------------
def test_auto_order_is_the_stated_tuple():
    assert auto.ORDER == ("npz", "glad", "datm", "tesla", "mtt", "tensors", "dc", "sre2l", "rded", "folder")
    assert sorted(auto.ORDER) == sorted(FORMATS)                     # every format, once
    doc = auto.__doc__
    positions = [doc.index(f"``{name}``") for name in auto.ORDER]
    assert positions == sorted(positions)                            # the docstring states the same order


def test_auto_order_decides_between_layouts(tmp_path):
    run_dir = write_run(tmp_path / "run", "glad")                  # GLaD's run folder with its final res_*.pt
    torch.save({"data": [[torch.zeros(2, 3, 4, 4), torch.arange(2)]]}, run_dir / "res_GLaD_CIFAR10_x_1ipc.pt")
    assert get_converter("dc").sniff(run_dir) and auto.detect(run_dir)[0] == "glad"
    torch.save(torch.zeros(2, 3, 4, 4), run_dir / "images.pt")
    torch.save(torch.arange(2), run_dir / "labels.pt")
    assert auto.detect(run_dir)[0] == "glad"


def test_auto_refusal_is_one_short_line_pointing_to_the_formats(tmp_path, runner):
    """Not a 700-character list: one line under 200 characters (besides the path) that says where the
    formats are listed; `ladd convert --help` does list every format."""
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    result = cli(runner, "auto", tmp_path / "stuff", "-o", tmp_path / "o.dla.h5")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    prefix = f"ladd: error: {tmp_path / 'stuff'}: "
    assert line.startswith(prefix) and len(line) - len(prefix) < 200, line
    assert "not a known layout" in line and "`ladd convert --help` lists the formats" in line
    listed = cli(runner, "--help").output
    for name in auto.ORDER:
        assert f"  {name}  " in listed or f"  {name} " in listed


# -- options a format does not read are refused ---------------------------------------------------------
@pytest.mark.parametrize("fmt,kind,args,flag", [
    ("datm", "datm", ["--experiment", "1"], "--experiment"),
    ("npz", "npz", ["--iteration", "3"], "--iteration"),
    ("mtt", "mtt", ["--codec", "uint8"], "--codec"),
    ("glad", "glad", ["--zca"], "--zca"),
    ("folder", "folder", ["--keep-float"], "--keep-float"),
    ("sre2l", "sre2l", ["--layout", "nhwc"], "--layout"),
    ("dc", "dc", ["--iteration", "0"], "--iteration"),
    ("auto", "datm", ["--experiment", "2", "--dataset", "cifar10"], "--experiment"),
])
def test_a_stray_option_is_refused(tmp_path, runner, fmt, kind, args, flag):
    src = layout(tmp_path, kind)
    out = tmp_path / "out.dla.h5"
    result = cli(runner, fmt, src, "-o", out, *args)
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and flag in error[0], result.output
    target = "datm" if fmt == "auto" else fmt
    assert f"not read by format {target}" in error[0] and "--class-names" in error[0].split(f"{target} reads ")[1]
    assert not out.exists()


def test_options_left_at_their_defaults_are_not_given(tmp_path, runner):
    src = layout(tmp_path, "folder")
    result = cli(runner, "folder", src, "-o", tmp_path / "o.dla.h5")        # --experiment 0, --layout auto ...
    assert result.exit_code == 0, result.output


def test_the_library_refuses_stray_options_too(tmp_path):
    src = layout(tmp_path, "npz")
    with pytest.raises(InputError, match="--iteration: not read by format npz"):
        convert("npz", src, tmp_path / "o.dla.h5", ConvertOptions(format_options={"iteration": 2}))
    check_options(get_converter("npz"), ConvertOptions(codec="uint8", format_options={"layout": "nchw"}))


# -- one finish, one set of defaults -----------------------------------------------------------------
def test_npz_pt_and_folder_record_the_same_normalisation_for_uint8_without_statistics(tmp_path, runner):
    images, labels, _ = make_arrays(6, c=3)
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    (tmp_path / "pt").mkdir()
    torch.save(torch.from_numpy(images), tmp_path / "pt" / "images.pt")
    torch.save(torch.from_numpy(labels), tmp_path / "pt" / "labels.pt")
    from PIL import Image
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "tree" / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(tmp_path / "tree" / f"c{label}" / f"{i:02d}.png")
    recorded = []
    for fmt, src in (("npz", tmp_path / "a.npz"), ("tensors", tmp_path / "pt"), ("folder", tmp_path / "tree")):
        out = tmp_path / f"{fmt}.dla.h5"
        result = cli(runner, fmt, src, "-o", out)
        assert result.exit_code == 0, result.output
        assert "computed from the images" in result.output
        assert verify(out) == []
        with open_dla(out) as f:
            assert f.image_dtype == np.uint8 and f.num_classes == 3
            recorded.append((f.mean, f.std, f.provenance["report"]["normalization"], sorted(f.images().ravel())))
    (mean, std, how, pix), *others = recorded
    expected = images.astype(np.float64) / 255
    assert np.allclose(mean, expected.mean(axis=(0, 2, 3))) and how == "computed from the images (0..1 scale)"
    for other in others:
        assert np.allclose(other[0], mean, atol=1e-12) and np.allclose(other[1], std, atol=1e-12)
        assert other[2] == how and other[3] == pix


def test_dataset_is_honoured_by_npz(tmp_path, runner):
    images, labels, _ = make_arrays(10, c=10)
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    out = tmp_path / "o.dla.h5"
    result = cli(runner, "npz", tmp_path / "a.npz", "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 0, result.output
    with open_dla(out) as f:
        assert f.class_names[0] == "airplane" and f.attrs["source_dataset"] == "cifar10"
        assert np.allclose(f.mean, (0.4914, 0.4822, 0.4465))


def test_mean_std_that_disagree_with_the_inputs_own_are_refused(tmp_path, runner):
    """Normalised images were normalised with one set of statistics: the input's record and a
    different --mean/--std cannot both be right."""
    x = np.random.default_rng(2).normal(size=(4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "a.npz", images=x, labels=np.arange(4) % 2, space="normalized", mean=[0.5, 0.4, 0.3],
             std=[0.2, 0.25, 0.3])
    out = tmp_path / "o.dla.h5"
    result = cli(runner, "npz", tmp_path / "a.npz", "-o", out, "--mean", "0.1,0.1,0.1", "--std", "0.2,0.25,0.3")
    assert result.exit_code == 1 and not out.exists()
    (line,) = result.output.strip().splitlines()
    assert "--mean/--std disagree with the input's own normalisation (mean [0.5, 0.4, 0.3]" in line
    same = cli(runner, "npz", tmp_path / "a.npz", "-o", out, "--mean", "0.5,0.4,0.3", "--std", "0.2,0.25,0.3")
    assert same.exit_code == 0, same.output


def test_a_preset_whose_statistics_differ_from_the_inputs_own_is_noted(tmp_path, runner):
    images, labels, _ = make_arrays(10, c=10)
    np.savez(tmp_path / "a.npz", images=images, labels=labels, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    out = tmp_path / "o.dla.h5"
    result = cli(runner, "npz", tmp_path / "a.npz", "-o", out, "--dataset", "cifar10")
    assert result.exit_code == 0, result.output
    assert "differ from preset cifar10's: the input's are kept" in result.output
    with open_dla(out) as f:
        assert np.allclose(f.mean, 0.5) and f.class_names[0] == "airplane" and f.attrs["source_dataset"] == "cifar10"


def test_pt_float_input_kept_or_quantised_as_npz(tmp_path, runner):
    """A normalised float npz and the same tensors through ``tensors`` give the same uint8 file."""
    pix = np.random.default_rng(3).uniform(0, 1, size=(6, 3, 8, 8))
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    x = ((pix - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)).astype(np.float32)
    labels = np.arange(6) % 3
    np.savez(tmp_path / "a.npz", images=x, labels=labels, space="normalized")
    (tmp_path / "pt").mkdir()
    torch.save(torch.from_numpy(x), tmp_path / "pt" / "images.pt")
    torch.save(torch.from_numpy(labels), tmp_path / "pt" / "labels.pt")
    stats = ["--mean", "0.5,0.4,0.3", "--std", "0.2,0.25,0.3"]
    stored = []
    for fmt, src in (("npz", tmp_path / "a.npz"), ("tensors", tmp_path / "pt")):
        assert cli(runner, fmt, src, "-o", tmp_path / f"{fmt}.dla.h5", *stats).exit_code == 0
        with open_dla(tmp_path / f"{fmt}.dla.h5") as f:
            stored.append(f.images())
    assert stored[0].dtype == np.uint8 and np.array_equal(stored[0], stored[1])


# -- codec: one value; the deprecated --k/--topk-values ------------------------------------------------
def dense_npz(tmp_path):
    images, labels, dense = make_arrays(5, n=5, side=32)
    np.savez(tmp_path / "in.npz", images=images, labels=labels, num_classes=10, dense_labels=dense, n=5,
             ratio=0.625)
    return tmp_path / "in.npz"


def test_deprecated_k_warns_and_works(tmp_path, runner):
    src = dense_npz(tmp_path)
    out = tmp_path / "old.dla.h5"
    result = cli(runner, "npz", src, "-o", out, "--codec", "topk", "--k", "3", "--topk-values", "uint8")
    assert result.exit_code == 0, result.output
    assert ("ladd: warning: --k/--topk-values are deprecated; use --codec topk:k=3,values=uint8"
            in result.output.splitlines())
    new = tmp_path / "new.dla.h5"
    result = cli(runner, "npz", src, "-o", new, "--codec", "topk:k=3,values=uint8")
    assert result.exit_code == 0 and "ladd: warning" not in result.output
    with open_dla(out) as a, open_dla(new) as b:
        assert a.codec == b.codec and a.codec.text() == "topk:k=3,values=uint8"
        assert np.array_equal(a.dense(), b.dense())
    result = cli(runner, "npz", src, "-o", tmp_path / "x.dla.h5", "--codec", "topk", "--k", "4")
    assert result.exit_code == 0 and "use --codec topk:k=4,values=float16" in result.output


def test_codec_is_validated_as_one_value(tmp_path, runner):
    src = dense_npz(tmp_path)
    for bad in ("nosuch", "topk:k=", "topk:k=3,values=int4"):
        result = cli(runner, "npz", src, "-o", tmp_path / "o.dla.h5", "--codec", bad)
        assert result.exit_code == 2 and "--codec" in result.output, result.output
    result = cli(runner, "npz", src, "-o", tmp_path / "o.dla.h5", "--codec", "uint8", "--k", "3")
    assert result.exit_code == 2 and "--k applies only to a codec with a k parameter" in result.output
    assert not (tmp_path / "o.dla.h5").exists()


def test_a_new_converter_is_asked_by_auto_without_touching_auto(tmp_path):
    """A converter that auto.ORDER does not list (a new file) is still asked, after the listed ones."""
    from ladd_format.converters import _REGISTRY, Converter, register

    marker = tmp_path / "thing.newformat"
    marker.write_text("x")

    @register
    class NewFormat(Converter):
        name = "zz-new-format"
        summary = "a test-only format"
        looks_for = "a *.newformat file"

        def sniff(self, path):
            return "a .newformat file" if str(path).endswith(".newformat") else None

    try:
        assert auto.sniff_order()[-1] == "zz-new-format"
        assert auto.sniff_order()[:len(auto.ORDER)] == auto.ORDER
        assert auto.detect(marker) == ("zz-new-format", "a .newformat file")
    finally:
        del _REGISTRY["zz-new-format"]
    assert "zz-new-format" not in auto.sniff_order()


def test_every_module_of_the_converters_package_is_imported():
    """Registration needs no list to edit: each module file is imported with the package."""
    import pkgutil
    import sys

    import ladd_format.converters as package

    for module in pkgutil.iter_modules(package.__path__):
        assert f"ladd_format.converters.{module.name}" in sys.modules
