"""Every rule of spec section 8 has a check, a file that breaks it, and a test named after it.

The rules are one enum (:class:`ladd_format.spec.rules.Rule`); the verifier registers one check per
rule (:data:`ladd_format.verify.CHECKS`); each rule has an invalid vector in ``spec/vectors/invalid``
or a damage case below; and a test ``test_rule_NN_<name>`` somewhere in ``tests/``. The first three
tests say which rules lack one of these.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ladd_format import errors as E
from ladd_format import open_dla
from ladd_format.spec import FORMAT_VERSION
from ladd_format.spec.rules import Rule
from ladd_format.verify import CHECKS, check, verify

from conftest import edit_values, flip_chunk_byte, rehash, tamper, write_dla

TESTS = Path(__file__).resolve().parent
INVALID = TESTS.parent / "spec" / "vectors" / "invalid"


def invalid_vectors() -> dict[Rule, list[Path]]:
    """The invalid vectors by the rule each breaks (``spec/vectors/invalid/expected.json``)."""
    found: dict[Rule, list[Path]] = {}
    for case in json.loads((INVALID / "expected.json").read_text()):
        found.setdefault(Rule(case["rule"]), []).append(INVALID / case["file"])
    return found


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _set_root(key, value):
    return lambda path: tamper(path, lambda f: f.attrs.__setitem__(key, value))


def _label_out_of_range(path: Path) -> None:
    tamper(path, lambda f: edit_values(f, "labels", lambda a: a.__setitem__(0, 10)))   # C = 10


def _std_zero(path: Path) -> None:
    tamper(path, lambda f: f["normalization"].attrs.__setitem__("std", np.array([0.0, 0.2, 0.2])))


def _no_tool(path: Path) -> None:
    tamper(path, lambda f: f["provenance"].attrs.__delitem__("tool"))


def _temperature_zero(path: Path) -> None:
    tamper(path, lambda f: f["dense"].attrs.__setitem__("temperature", np.float64(0.0)))


def _bad_chunk(path: Path) -> None:
    flip_chunk_byte(path, "/labels", 0)


def _attribute_changed(path: Path) -> None:
    tamper(path, lambda f: f["normalization"].attrs.__setitem__("mean", np.array([0.25, 0.5, 0.5])), reseal=False)


def _row_changed(path: Path) -> None:
    tamper(path, lambda f: edit_values(f, "labels", lambda a: a.__setitem__(3, (a[3] + 1) % 10)), rows=False)


def _soft_link(path: Path) -> None:
    tamper(path, lambda f: f.__setitem__("extra", h5py.SoftLink("/labels")))


def _declared_beyond_file(path: Path) -> None:
    def fn(f):
        ds = f.create_dataset("extra", shape=(1 << 20, 64), chunks=(1024, 64), dtype=np.int64, fletcher32=True)
        ds.attrs["sha256"] = "0" * 64
    tamper(path, fn)


def _stream_box_outside(path: Path) -> None:
    """Record 0's box 1 pixel taller than the 16-pixel image (its sha256 and batch digest resealed)."""
    tamper(path, lambda f: edit_values(f, "stream/box", lambda a: a.__setitem__((0, slice(None)), (0, 0, 17, 4))))


def _reseal_tail_digests(f: h5py.File) -> None:
    """Recompute ``/stream/tail/batch_sha256`` from the tail's rows as they now are (and its sha256)."""
    starts = np.append(f["stream/batch_start"][()], f["stream/image"].shape[0])
    table = f["stream/tail/batch_sha256"]
    for b in range(len(starts) - 1):
        for column, name in enumerate(("coef", "scale")):
            rows = np.ascontiguousarray(f[f"stream/tail/{name}"][starts[b]:starts[b + 1]])
            table[b, column] = np.frombuffer(hashlib.sha256(rows.tobytes()).digest(), np.uint8)
    rehash(table)


def _stream_tail_scale_negative(path: Path) -> None:
    """Record 1's tail scale made negative, its sha256 and batch digest resealed."""
    def fn(f):
        edit_values(f, "stream/tail/scale", lambda a: a.__setitem__(1, -abs(a[1]) - 1))
        _reseal_tail_digests(f)
    tamper(path, fn)


def _stream_batch_changed(path: Path) -> None:
    """Record 0's flip turned over, its dataset's sha256 updated, its batch digest not."""
    tamper(path, lambda f: edit_values(f, "stream/flip", lambda a: a.__setitem__(0, 1 - a[0])), rows=False)


#: A damage to a valid file (12 images, 10 classes, float32 dense labels; for the stream rules also a
#: cutmix stream, 2 epochs, 3 batches) that breaks exactly this rule.
DAMAGE = {
    Rule.FILE: _truncate,
    Rule.FORMAT: _set_root("format", "not-ladd"),
    Rule.ROOT: _set_root("ipc", np.int64(0)),
    Rule.LABELS: _label_out_of_range,
    Rule.NORMALIZATION: _std_zero,
    Rule.DENSE: _temperature_zero,
    Rule.PROVENANCE: _no_tool,
    Rule.CHECKSUMS: _bad_chunk,
    Rule.ROOT_DIGEST: _attribute_changed,
    Rule.ROW_DIGESTS: _row_changed,
    Rule.SELF_CONTAINED: _soft_link,
    Rule.LIMITS: _declared_beyond_file,
    Rule.STREAM: _stream_box_outside,
    Rule.STREAM_DIGESTS: _stream_batch_changed,
    Rule.STREAM_TAIL: _stream_tail_scale_negative,
}
#: the rules whose damage needs a file with a stream
STREAM_RULES = (Rule.STREAM, Rule.STREAM_DIGESTS, Rule.STREAM_TAIL)
#: the stream codec of those files: top-3 with a rank-2 tail (spec 1.3), which rule 18 checks
DAMAGE_STREAM_CODEC = "topk:k=3,values=uint8,tail=2"


def damaged(tmp_path: Path, rule: Rule) -> Path:
    path = write_dla(tmp_path / f"rule{rule.number:02d}.dla.h5", stream_mix="cutmix" if rule in STREAM_RULES else None,
                     stream_codec=DAMAGE_STREAM_CODEC)
    DAMAGE[rule](path)
    return path


def a_file_breaking(tmp_path: Path, rule: Rule) -> Path:
    """A file that breaks ``rule``: a damage case when there is one, else its first invalid vector."""
    if rule in DAMAGE:
        return damaged(tmp_path, rule)
    source = invalid_vectors()[rule][0]
    return Path(shutil.copy(source, tmp_path / source.name))


def rules_named_in_tests() -> set[int]:
    """Rule numbers that a test function ``test_rule_NN_...`` in ``tests/`` is named after."""
    found = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_rule_"):
                number = node.name.removeprefix("test_rule_")[:2]
                if number.isdigit():
                    found.add(int(number))
    return found


def assert_verify_reports(path: Path, rule: Rule, only: bool = True) -> None:
    """``verify`` reports ``rule`` (and, with ``only``, no other rule), each problem naming its rule."""
    problems = verify(path)
    rules = {p.rule for p in problems}
    assert rule in rules, f"rule {rule} not reported: {[str(p) for p in problems]}"
    if only:
        assert rules == {rule}, [f"{p} [rule {p.rule_label}]" for p in problems]
    assert all(isinstance(p.rule, Rule) for p in problems)


def assert_reader_refuses(path: Path, rule: Rule) -> None:
    """Opening the file (rules decided by headers and attributes) refuses it under ``rule``."""
    with pytest.raises(E.LaddError) as info:
        open_dla(path).close()
    assert info.value.rule is rule, f"{info.value} [rule {info.value.rule_label}]"


# -- the three completeness checks ---------------------------------------------------------------
def test_every_rule_has_a_registered_check():
    missing = [str(rule) for rule in Rule if rule not in CHECKS]
    assert not missing, f"rules without a check registered in ladd_format.verify.CHECKS: {missing}"
    assert all(callable(fn) for fn in CHECKS.values())


def test_every_rule_has_an_invalid_vector_or_a_damage_case():
    vectors = invalid_vectors()
    missing = [str(rule) for rule in Rule if rule not in vectors and rule not in DAMAGE]
    assert not missing, f"rules with neither an invalid vector (spec/vectors/invalid) nor a damage case: {missing}"


def test_every_rule_has_a_test_named_after_it():
    named = rules_named_in_tests()
    missing = [f"test_rule_{rule.number:02d}_{rule.label}" for rule in Rule if rule.number not in named]
    assert not missing, f"rules without a test named after them: {missing}"


def test_rules_are_the_eighteen_of_section_8_with_their_names():
    assert [rule.number for rule in Rule] == list(range(1, 19))
    assert E.RULES == {rule.number: rule.label for rule in Rule}
    assert (Rule.ROW_DIGESTS.label, Rule.ROW_DIGESTS.section, str(Rule.ROW_DIGESTS)) == ("row_digests", "2.2",
                                                                                         "13 row_digests")
    spec = (TESTS.parent / "spec" / "dla-v1.md").read_text()
    for rule in Rule:
        assert f"{rule.number}. **{rule.label}**" in spec


@pytest.mark.parametrize("rule", sorted(DAMAGE), ids=lambda r: f"{r.number:02d}-{r.label}")
def test_each_damage_case_breaks_exactly_its_rule(tmp_path, rule):
    assert_verify_reports(damaged(tmp_path, rule), rule)


@pytest.mark.parametrize("rule, path", [(rule, path) for rule, paths in sorted(invalid_vectors().items())
                                        for path in paths], ids=lambda v: getattr(v, "name", str(v)))
def test_each_invalid_vector_breaks_exactly_its_rule(rule, path):
    assert_verify_reports(path, rule)


# -- one test named after each rule --------------------------------------------------------------
def test_rule_01_file(tmp_path):
    path = a_file_breaking(tmp_path, Rule.FILE)
    assert_verify_reports(path, Rule.FILE)
    assert_reader_refuses(path, Rule.FILE)


def test_rule_02_format(tmp_path):
    path = a_file_breaking(tmp_path, Rule.FORMAT)
    assert_verify_reports(path, Rule.FORMAT)
    assert_reader_refuses(path, Rule.FORMAT)


def test_rule_02_format_version_missing_is_rule_2(tmp_path):
    path = tamper(write_dla(tmp_path / "v.dla.h5"), lambda f: f.attrs.__delitem__("format_version"), reseal=False)
    assert_reader_refuses(path, Rule.FORMAT)
    assert_verify_reports(path, Rule.FORMAT)


def test_rule_03_root(tmp_path):
    path = a_file_breaking(tmp_path, Rule.ROOT)
    assert_verify_reports(path, Rule.ROOT)
    assert_reader_refuses(path, Rule.ROOT)


def test_rule_04_images(tmp_path):
    path = a_file_breaking(tmp_path, Rule.IMAGES)
    assert_verify_reports(path, Rule.IMAGES)
    assert_reader_refuses(path, Rule.IMAGES)


def test_rule_05_labels(tmp_path):
    path = a_file_breaking(tmp_path, Rule.LABELS)
    assert_verify_reports(path, Rule.LABELS)
    with open_dla(path) as f, pytest.raises(E.LabelRangeError) as info:
        f.labels(0, 1)                               # the reader checks every row it returns
    assert info.value.rule is Rule.LABELS


def test_rule_06_soft_labels(tmp_path):
    path = a_file_breaking(tmp_path, Rule.SOFT_LABELS)
    assert_verify_reports(path, Rule.SOFT_LABELS)
    assert_reader_refuses(path, Rule.SOFT_LABELS)


def test_rule_07_normalization(tmp_path):
    path = a_file_breaking(tmp_path, Rule.NORMALIZATION)
    assert_verify_reports(path, Rule.NORMALIZATION)
    assert_reader_refuses(path, Rule.NORMALIZATION)


def test_rule_08_dense(tmp_path):
    path = a_file_breaking(tmp_path, Rule.DENSE)
    assert_verify_reports(path, Rule.DENSE)
    assert_reader_refuses(path, Rule.DENSE)


def test_rule_09_provenance(tmp_path):
    path = a_file_breaking(tmp_path, Rule.PROVENANCE)
    assert_verify_reports(path, Rule.PROVENANCE)
    assert_reader_refuses(path, Rule.PROVENANCE)


def test_rule_10_filters(tmp_path):
    path = a_file_breaking(tmp_path, Rule.FILTERS)
    assert_verify_reports(path, Rule.FILTERS)
    assert_reader_refuses(path, Rule.FILTERS)


def test_rule_11_checksums(tmp_path):
    path = a_file_breaking(tmp_path, Rule.CHECKSUMS)
    assert_verify_reports(path, Rule.CHECKSUMS)
    with open_dla(path) as f, pytest.raises(E.ChecksumError) as info:
        f.labels(0, 1)
    assert info.value.rule is Rule.CHECKSUMS


def test_rule_12_root_digest(tmp_path):
    path = a_file_breaking(tmp_path, Rule.ROOT_DIGEST)
    assert_verify_reports(path, Rule.ROOT_DIGEST)
    assert_reader_refuses(path, Rule.ROOT_DIGEST)


def test_rule_13_row_digests(tmp_path):
    """A damaged row is rule 13 wherever it is found: the verifier's scan and the reader's read
    (whose DigestError once defaulted to rule 12 and was renamed 13 after the fact)."""
    path = a_file_breaking(tmp_path, Rule.ROW_DIGESTS)
    assert_verify_reports(path, Rule.ROW_DIGESTS)
    with open_dla(path) as f, pytest.raises(E.DigestError) as info:
        f.labels(3, 4)
    assert info.value.rule is Rule.ROW_DIGESTS and info.value.rule_label == "13 row_digests"
    assert E.DigestError("x").rule is None            # the kind names no rule: 12 or 13, said where raised


def test_rule_14_self_contained(tmp_path):
    path = a_file_breaking(tmp_path, Rule.SELF_CONTAINED)
    assert_verify_reports(path, Rule.SELF_CONTAINED)
    assert_reader_refuses(path, Rule.SELF_CONTAINED)


def test_rule_15_limits(tmp_path):
    path = a_file_breaking(tmp_path, Rule.LIMITS)
    assert_verify_reports(path, Rule.LIMITS)
    assert_reader_refuses(path, Rule.LIMITS)


def _read_every_batch(path: Path) -> None:
    with open_dla(path) as f:
        stream = f.stream
        for b in range(stream.num_batches):
            stream.read_batch(b)


def test_rule_16_stream(tmp_path):
    """A box outside the image: verify names rule 16; the file opens (its images are intact) and the
    stream reader refuses the batch that holds the box, under rule 16."""
    path = a_file_breaking(tmp_path, Rule.STREAM)
    assert_verify_reports(path, Rule.STREAM)
    with open_dla(path) as f:
        assert f.labels().shape == (12,)
    with pytest.raises(E.LaddError) as info:
        _read_every_batch(path)
    assert info.value.rule is Rule.STREAM, f"{info.value} [rule {info.value.rule_label}]"


def test_rule_17_stream_digests(tmp_path):
    path = a_file_breaking(tmp_path, Rule.STREAM_DIGESTS)
    assert_verify_reports(path, Rule.STREAM_DIGESTS)
    with pytest.raises(E.LaddError) as info:
        _read_every_batch(path)
    assert info.value.rule is Rule.STREAM_DIGESTS, f"{info.value} [rule {info.value.rule_label}]"
    with open_dla(path) as f:                                      # the other batches still read
        assert len(f.stream.read_batch(f.stream.num_batches - 1)) >= 1


def test_rule_18_stream_tail(tmp_path):
    """A negative tail scale (its digests resealed): verify names rule 18 alone; the file and its
    stream open (rule 18's layout holds) and the reader refuses the batch holding it, under rule 18.
    A rank beyond the limit is refused when the file is opened, under rule 18."""
    path = a_file_breaking(tmp_path, Rule.STREAM_TAIL)
    assert_verify_reports(path, Rule.STREAM_TAIL)
    with open_dla(path) as f:
        assert f.stream.tail is not None and f.stream.tail.rank == 2
    with pytest.raises(E.LaddError) as info:
        _read_every_batch(path)
    assert info.value.rule is Rule.STREAM_TAIL and "scale" in str(info.value), info.value.rule_label
    tamper(path, lambda f: f["stream/tail"].attrs.__setitem__("rank", np.int64(257)))
    assert_verify_reports(path, Rule.STREAM_TAIL, only=False)
    assert_reader_refuses(path, Rule.STREAM_TAIL)


def test_stream_rules_have_invalid_vectors_and_damage_cases():
    vectors = invalid_vectors()
    for rule in STREAM_RULES:
        assert rule in DAMAGE and len(vectors.get(rule, [])) >= 2, rule


# -- errors carry their rule; verify's result object ------------------------------------------------
def test_every_kind_of_error_states_its_rule_and_none_defaults_to_general():
    kinds = [cls for cls in vars(E).values() if isinstance(cls, type) and issubclass(cls, E.LaddError)
             and cls is not E.LaddError]
    for cls in kinds:
        assert "rule" in vars(cls), f"{cls.__name__} does not state its rule"
        assert cls.rule is None or isinstance(cls.rule, Rule), cls
    assert all(getattr(cls("x"), "rule") != "general" for cls in kinds)
    assert E.InputError("x").rule is None and E.InputError("x").rule_number is None
    assert E.MissingFieldError("x", rule=Rule.PROVENANCE).rule_label == "9 provenance"
    with pytest.raises(TypeError, match="must state its rule"):
        type("Unruled", (E.LaddError,), {})


def test_check_returns_problems_version_and_digests_in_one_opening(tmp_path):
    vector = TESTS.parent / "spec" / "vectors" / "uint8.dla.h5"
    expected = json.loads(vector.with_name("uint8.expected.json").read_text())
    result = check(vector)
    assert result.ok and result.problems == [] and result.format_version == "1.1"        # a 1.1 vector stays 1.1
    assert result.content_sha256 == expected["content_sha256"]
    with h5py.File(vector, "r") as f:
        assert result.root_sha256 == f.attrs["root_sha256"].decode()
    legacy = check(TESTS.parent / "spec" / "vectors" / "legacy_1_0.dla.h5")
    assert legacy.ok and legacy.format_version == "1.0" and legacy.root_sha256 is None and legacy.content_sha256
    bad = check(damaged(tmp_path, Rule.NORMALIZATION))
    assert not bad.ok and bad.root_sha256 is None and bad.content_sha256 is None
    assert bad.format_version == FORMAT_VERSION
    assert [str(p) for p in bad.problems] == [str(p) for p in verify(tmp_path / "rule07.dla.h5")]


# -- names: one place for every dataset path -----------------------------------------------------
PACKAGE = TESTS.parent / "ladd_format"
DATASET_PATHS = {"/images", "/labels", "/soft_labels", "/normalization", "/dense", "/dense/labeler", "/provenance",
                 "/row_sha256"}
#: modules held to every dataset path (the format core, torch/, labeler/); every module is held to "/images"
CORE_AND_LOADERS = [p for p in sorted(PACKAGE.rglob("*.py"))
                    if p.relative_to(PACKAGE).parts[0] not in ("converters", "train", "viz", "export.py", "demo.py")]


def literal_strings(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant in ``path`` that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_dataset_paths_are_spelled_only_in_spec_names():
    names = PACKAGE / "spec" / "names.py"
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != names
             for line, value in literal_strings(path)
             if value == "/images" or (path in CORE_AND_LOADERS and value in DATASET_PATHS)]
    assert not found, "dataset paths spelled outside ladd_format/spec/names.py (import them):\n" + "\n".join(found)


def test_every_limit_is_defined_once_in_spec_limits():
    """A bound of spec 2.4 or of the readers' blocks is assigned in spec/limits.py alone (other
    modules import it), and deflate's 1032 is written nowhere else."""
    from ladd_format.spec import limits

    bounds = {name for name in vars(limits) if name.isupper()}
    home = PACKAGE / "spec" / "limits.py"
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == home:
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {t.id} =" for t in targets
                      if isinstance(t, ast.Name) and t.id in bounds]
        found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: 1032" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value == 1032]
    assert not found, "limits defined outside ladd_format/spec/limits.py:\n" + "\n".join(found)
