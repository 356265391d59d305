"""Converters own their method: each run-folder converter states its facts (file naming and
padding, label kind, normalisation, ZCA sign, sniff evidence) as hooks of ``runs.RunFolder``;
converters declare their options; ``convert()`` returns the converter it chose and why; the
shared code is split by what it does; each export sits next to its importer."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from ladd_format import open_dla
from ladd_format.converters import (ConversionResult, ConvertOptions, Option, UnreadOptions, all_options,
                                    check_options, convert, converter_names, get_converter)
from ladd_format.converters.runs import Evidence, RunFolder, recognise
from ladd_format.errors import InputError, MissingExtraError
from ladd_format.presets import IMAGENET_MEAN, IMAGENET_STD, get_preset

from test_convert_images import write_run

PACKAGE = Path(__file__).resolve().parents[1] / "ladd_format"
RUN_FORMATS = ("mtt", "glad", "datm", "tesla", "tensors")


# -- each run-folder converter holds its own facts ------------------------------------------------------
@pytest.mark.parametrize("name,padding,label_kind,records", [
    ("mtt", 0, "indices", True), ("glad", 5, "indices", True), ("datm", 0, "logits", True),
    ("tesla", 0, "probs", True), ("tensors", 0, None, False)])
def test_each_run_converter_states_its_padding_label_kind_and_method(name, padding, label_kind, records):
    converter = get_converter(name)
    assert isinstance(converter, RunFolder)
    assert (converter.padding, converter.label_kind, converter.records_method) == (padding, label_kind, records)
    assert converter.saves_lr == (name == "datm")


def test_file_naming_is_each_converters_hook():
    assert get_converter("glad").images_name(500) == "images_00500.pt"
    assert get_converter("mtt").images_name(500) == "images_500.pt"
    assert get_converter("datm").images_name(None) == "images_best.pt"
    assert get_converter("tensors").images_name(None) == "images.pt"
    assert get_converter("tensors").images_name(3) == "images_3.pt"


def _seen(tmp_path, unsuffixed=False, iterations=(), lr=(), kind=None) -> Evidence:
    seen = Evidence(tmp_path, unsuffixed, tuple(iterations), tuple(tmp_path / n for n in lr), tmp_path / "labels_best.pt")
    seen.__dict__["labels_kind"] = kind                  # what reading the labels would say (cached_property)
    return seen


def test_sniff_evidence_is_each_converters_hook(tmp_path):
    """Each converter answers for its own evidence only; recognise() asks them in rank order."""
    cases = {
        "padded": (_seen(tmp_path, iterations=("00500", "best")), "glad"),
        "lr file": (_seen(tmp_path, iterations=("0",), lr=("lr_0.pt",)), "datm"),
        "logits": (_seen(tmp_path, kind="logits"), "datm"),
        "probs": (_seen(tmp_path, kind="probs"), "tesla"),
        "indices": (_seen(tmp_path), "mtt"),
        "unsuffixed lr": (_seen(tmp_path, unsuffixed=True, lr=("lr.pt",)), "datm"),
        "unsuffixed probs": (_seen(tmp_path, unsuffixed=True, kind="probs"), "tesla"),
        "unsuffixed indices": (_seen(tmp_path, unsuffixed=True), "tensors"),
    }
    ranked = sorted((get_converter(n) for n in RUN_FORMATS), key=lambda c: c.rank)
    for case, (seen, expected) in cases.items():
        first = next(c.name for c in ranked if c.evidence(seen))
        assert first == expected, case
    assert get_converter("glad").evidence(cases["padded"][0]) == "iterations zero-padded to 5 digits, e.g. images_00500.pt"
    assert get_converter("datm").evidence(cases["lr file"][0]) == "learned learning rate file lr_0.pt"
    assert get_converter("mtt").evidence(cases["unsuffixed indices"][0]) is None


@pytest.mark.parametrize("kind", ["mtt", "glad", "datm", "tesla", "tensors"])
def test_recognise_names_the_run_converter(tmp_path, kind):
    run = write_run(tmp_path / "run", kind)
    assert recognise(run)[0] == kind
    assert [name for name in RUN_FORMATS if get_converter(name).sniff(run)] == [kind]


def test_normalisation_is_the_methods_hook():
    imagenette, cifar10, cifar100 = get_preset("imagenette"), get_preset("cifar10"), get_preset("cifar100")
    glad = importlib.import_module("ladd_format.converters.glad")
    assert get_converter("glad").normalization(imagenette) == (glad.GLAD_DEFAULT_MEAN, glad.GLAD_DEFAULT_STD)
    assert get_converter("glad").normalization(cifar100) == (glad.GLAD_DEFAULT_MEAN, glad.GLAD_DEFAULT_STD)
    assert get_converter("glad").normalization(cifar10) == (cifar10.mean, cifar10.std)
    assert get_converter("rded").normalization(cifar10) == (IMAGENET_MEAN, IMAGENET_STD)
    assert get_converter("mtt").normalization(imagenette) == (imagenette.mean, imagenette.std)


def test_zca_sign_is_datms_hook():
    assert get_converter("datm").zca_sign("cifar100") == "DATM's CIFAR configurations use ZCA"
    assert get_converter("datm").zca_sign("imagenette") is None
    assert all(get_converter(n).zca_sign("cifar10") is None for n in ("mtt", "glad", "tesla", "tensors"))


def test_no_method_tables_remain_in_shared_modules():
    """runs.py keeps no PADDING table, no family() if-chain and no branch on a method's name;
    presets.py keeps datasets only (no per-method normalisation)."""
    runs = importlib.import_module("ladd_format.converters.runs")
    presets = importlib.import_module("ladd_format.presets")
    assert not hasattr(runs, "PADDING") and not hasattr(runs, "family")
    assert not hasattr(presets, "normalization") and not hasattr(presets, "GLAD_DEFAULT_MEAN")
    source = (PACKAGE / "converters" / "runs.py").read_text()
    assert not re.search(r"""(==|!=|\bin)\s*\(?["'](mtt|glad|datm|tesla|tensors)["']""", source)


# -- options: declared by the converters -------------------------------------------------------------
def test_options_are_declared_once_and_each_converter_lists_what_it_reads():
    options = all_options()
    assert len({o.name for o in options}) == len(options)
    assert all(isinstance(o, Option) for o in options)
    by_name = {o.name: o for o in options}
    assert by_name["iteration"].common is False and by_name["layout"].default == "auto"
    stream = {"relabel", "sampler_seed", "batch_size", "crop_size", "stream_codec", "stream_temperature", "teacher_arch",
              "check_teacher", "check_slots"}                         # sre2l --relabel's
    assert {"iteration", "experiment", "space", "layout"} | stream == {o.name for o in options if not o.common}
    assert "iteration" not in ConvertOptions.__dataclass_fields__            # not a bag of every format's fields
    for name in converter_names():
        for option in get_converter(name).options:
            assert option is by_name[option.name] or name == "auto", (name, option.name)


def test_from_values_splits_common_and_format_options():
    options = ConvertOptions.from_values({"dataset": "cifar10", "iteration": 3})
    assert options.dataset == "cifar10" and options.format_options == {"iteration": 3}
    assert options.get("iteration") == 3 and options.get("layout") == "auto"
    with pytest.raises(InputError, match="unknown convert option"):
        ConvertOptions.from_values({"nosuch": 1})


def test_format_options_are_checked_against_the_declaration():
    with pytest.raises(InputError, match="--iteration takes an integer"):
        check_options(get_converter("mtt"), ConvertOptions(format_options={"iteration": "3"}))
    with pytest.raises(InputError, match="--layout takes one of auto, nchw, nhwc"):
        check_options(get_converter("npz"), ConvertOptions(format_options={"layout": "hwc"}))
    with pytest.raises(InputError, match="unknown format option"):
        check_options(get_converter("npz"), ConvertOptions(format_options={"dataset": "cifar10"}))
    with pytest.raises(UnreadOptions, match="--layout: not read by format npz|--layout: not read by format mtt"):
        check_options(get_converter("mtt"), ConvertOptions(format_options={"layout": "auto"}))  # given = present


# -- convert(): the chosen converter and why ----------------------------------------------------------
def test_convert_returns_the_chosen_converter_and_why(tmp_path):
    run = write_run(tmp_path / "run", "mtt")
    seen = []
    result = convert("auto", run, tmp_path / "a.dla.h5", ConvertOptions(dataset="cifar10"),
                     progress=lambda done, total: seen.append((done, total)))
    assert isinstance(result, ConversionResult)
    assert result.converter == "mtt" and result.reason == recognise(run)[1]
    assert result.notes[0] == f"auto: detected mtt ({result.reason})"
    assert seen and seen[-1] == (20, 20)                                     # auto reports progress
    assert result.report["preset"] == "cifar10"
    named = convert("mtt", run, tmp_path / "b.dla.h5", ConvertOptions(dataset="cifar10"))
    assert (named.converter, named.reason) == ("mtt", None)
    with open_dla(tmp_path / "a.dla.h5") as f:
        assert f.provenance["converter"] == "mtt"


def test_an_unread_option_names_auto_s_choice_before_anything_is_written(tmp_path):
    run = write_run(tmp_path / "run", "datm")
    out = tmp_path / "o.dla.h5"
    with pytest.raises(UnreadOptions) as caught:
        convert("auto", run, out, ConvertOptions(dataset="cifar10", format_options={"experiment": 2}))
    exc = caught.value
    assert (exc.flags, exc.converter, exc.reason) == (["--experiment"], "datm", recognise(run)[1])
    assert exc.message.startswith(f"--experiment: not read by format datm (auto: detected datm ({exc.reason})); "
                                  "datm reads --class-names")
    assert not out.exists()


# -- the shared code, split by what it does -------------------------------------------------------------
def test_the_shared_code_lives_in_inputs_rawset_and_writing():
    from ladd_format.converters import inputs, rawset, writing
    assert rawset.finish.__module__.endswith("rawset") and rawset.RawSet.__module__.endswith("rawset")
    assert inputs.load_pt.__module__.endswith("inputs") and inputs.npz_members.__module__.endswith("inputs")
    assert writing.Preencoded.__module__.endswith("writing") and writing.write_batches.__module__.endswith("writing")
    for module in (inputs, rawset, writing):
        assert len(inspect.getsource(module).splitlines()) < 450, module.__name__


def test_exports_sit_next_to_their_importers():
    export = importlib.import_module("ladd_format.export")
    for fmt in export.FORMATS:
        module = importlib.import_module(f"ladd_format.converters.{fmt}")
        assert callable(module.write_export), fmt
    assert not hasattr(export, "export_npz") and not hasattr(export, "export_folder")


def test_no_dataset_path_literal_in_converters_or_export():
    literal = re.compile(r"""["']/(images|labels|soft_labels|dense|normalization|provenance)["']""")
    files = sorted((PACKAGE / "converters").glob("*.py")) + [PACKAGE / "export.py"]
    assert [p.name for p in files if literal.search(p.read_text())] == []


# -- torch is an extra -------------------------------------------------------------------------------
def test_a_pt_input_without_torch_names_the_extra(tmp_path, monkeypatch):
    import ladd_format.extras as extras
    run = write_run(tmp_path / "run", "mtt")
    monkeypatch.setattr(extras, "missing", lambda extra: ["torch"])
    with pytest.raises(MissingExtraError, match=r"needs the 'torch' extra .*pip install 'ladd-format\[torch\]'"):
        convert("mtt", run, tmp_path / "o.dla.h5", ConvertOptions(dataset="cifar10"))
    assert not (tmp_path / "o.dla.h5").exists()


def test_ddranking_export_without_torch_names_the_extra(tmp_path, monkeypatch, dla_file):
    import ladd_format.extras as extras
    from ladd_format.export import export
    monkeypatch.setattr(extras, "missing", lambda extra: ["torch"])
    with pytest.raises(MissingExtraError, match="export --format ddranking needs the 'torch' extra"):
        export(dla_file, tmp_path / "dd", "ddranking")
    assert not (tmp_path / "dd").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
