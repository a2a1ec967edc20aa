"""fedtrain.validate: the bounds hold before reading, JSON is strict, YAML has no aliases, npz members are sized first, messages name the file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy

from fedtrain.errors import ConfigError, DataFormatError
from fedtrain.validate import (
    UntrustedFile,
    integer,
    list_of,
    mapping_rule,
    npz_arrays,
    number,
    optional,
    parse_json,
    parse_json_lines,
    parse_yaml,
    read_bytes,
    shown_value,
    text,
)


def _file(path: Path, error=DataFormatError) -> UntrustedFile:
    return UntrustedFile(path, "test record", "Rewrite it.", error)


def test_rules_say_what_they_expect_and_refuse_bools_as_numbers():
    assert integer(0)(3) and not integer(0)(-1) and not integer(0)(True) and not integer()(2.0)
    assert integer(1, 4).words == "an integer >= 1 and <= 4"
    assert number()(0.5) and not number()(float("nan")) and number(finite=False)(float("inf")) and not number()(False)
    assert optional(text())(None) and text(("a", "b"))("a") and not text(("a", "b"))("c")
    assert list_of(integer(0), 2)([1, 2]) and not list_of(integer(0), 2)([1]) and not list_of(integer(0))("12")
    assert mapping_rule(integer())({"a": 1}) and not mapping_rule()({1: 2}) and not mapping_rule()([("a", 1)])
    assert shown_value("x" * 100).endswith("...") and len(shown_value("x" * 100)) == 60
    assert shown_value(2**300) == "an integer of 301 bits"


def test_a_failure_is_one_paragraph_naming_the_file_the_entry_and_the_fix(tmp_path):
    file = _file(tmp_path / "r.json", ConfigError)
    with pytest.raises(ConfigError, match=r"r\.json is not a usable test record: point 'x' must be a finite number, got 'a'\. Rewrite it\."):
        file.field({"x": "a"}, "x", number(), "point ")
    with pytest.raises(ConfigError, match="lacks the entry 'y'"):
        file.field({}, "y")
    assert file.field({}, "y", integer(), default=7) == 7
    with pytest.raises(ConfigError, match="must be a mapping"):
        file.mapping([1])


def test_sizes_are_bounded_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(" " * 101)
    with pytest.raises(DataFormatError, match="it has 101 bytes, more than the 100"):
        read_bytes(_file(path), 100)
    with pytest.raises(DataFormatError, match="does not exist"):
        read_bytes(_file(tmp_path / "none"), 100)
    with pytest.raises(DataFormatError, match="not a regular file"):
        read_bytes(_file(tmp_path), 100)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b'{"a": 1', "is not valid JSON"),
    (b'{"a": NaN}', "NaN is not JSON"),
    (b'{"a": Infinity}', "Infinity is not JSON"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b"[" * 100_000, "is not valid JSON"),  # nesting deeper than Python's recursion limit
])
def test_json_is_strict(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        parse_json(_file(path))


def test_json_lines_name_the_bad_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    with pytest.raises(DataFormatError, match="line 4 is not valid JSON"):
        parse_json_lines(_file(path))
    path.write_text('{"a": 1}\n\n[2]\n')
    assert parse_json_lines(_file(path)) == [{"a": 1}, [2]]


def test_yaml_refuses_anchors_aliases_and_python_tags_at_once(tmp_path):
    file = _file(tmp_path / "c.yaml", ConfigError)
    assert parse_yaml(file, "rounds: 3\nlist: [1, 2]\n") == {"rounds": 3, "list": [1, 2]}
    with pytest.raises(ConfigError, match=r"YAML anchor or alias .*at line 1"):
        parse_yaml(file, "a: &x 1\nb: 2\n")  # even a harmless anchor
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    assert len(bomb) < 1024
    with pytest.raises(ConfigError, match="anchor or alias"):
        parse_yaml(file, bomb)
    with pytest.raises(ConfigError, match="could not be parsed as YAML"):
        parse_yaml(file, "x: !!python/object/apply:os.system ['true']\n")


def _npz_with(path: Path, name: str, header: dict, payload: bytes) -> None:
    stream = io.BytesIO()
    npy.write_array_header_1_0(stream, header)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"{name}.npy", stream.getvalue() + payload)


def test_npz_members_are_sized_from_their_headers_before_loading(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, a=np.arange(3.0))
    assert list(npz_arrays(_file(path))["a"]) == [0.0, 1.0, 2.0]
    _npz_with(path, "huge", {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}, b"\0" * 8)
    with pytest.raises(DataFormatError, match=r"'huge' declares shape \(1000000000000,\) of float64 \(8,000,000,000,000 bytes\)"):
        npz_arrays(_file(path))
    with pytest.raises(DataFormatError, match="more than the 16 bytes"):
        npz_arrays(_file(tmp_path / "s.npz"), member_limit=16)


def test_npz_object_arrays_short_members_and_too_many_members_are_refused(tmp_path):
    objects = tmp_path / "o.npz"
    np.savez(objects, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataFormatError, match="holds Python objects"):
        npz_arrays(_file(objects))
    short = tmp_path / "short.npz"
    np.savez(short, a=np.zeros(1))
    _npz_with(short, "b", {"descr": "<f8", "fortran_order": False, "shape": (4,)}, b"\0" * 8)
    with pytest.raises(DataFormatError, match="its array 'b' is damaged"):
        npz_arrays(_file(short))
    many = tmp_path / "many.npz"
    np.savez(many, **{f"a{i}": np.zeros(1) for i in range(5)})
    with pytest.raises(DataFormatError, match="it has 5 members, more than the 4"):
        npz_arrays(_file(many), max_members=4)
    (tmp_path / "t.npz").write_bytes(many.read_bytes()[:40])
    with pytest.raises(DataFormatError, match="could not be read as an .npz"):
        npz_arrays(_file(tmp_path / "t.npz"))
