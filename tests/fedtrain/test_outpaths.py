"""Output paths from user-supplied names: one harmless component each, never outside the output folder."""

from __future__ import annotations

import pytest

from fedtrain.errors import ConfigError
from fedtrain.outpaths import inside, safe_name, unique_names


@pytest.mark.parametrize(
    ("name", "safe"),
    [("..", "__"), (".", "_"), ("/", "_"), ("", "_"), ("../../etc", "___.._etc"), ("a/b", "a_b"), (".hidden", "_hidden"),
     ("fedavg", "fedavg"), ("fedasam-swa_2.5", "fedasam-swa_2.5"), ("café", "café"), ("bad\udcffbyte", "bad_byte"),
     ("line\nbreak", "line_break")],
)
def test_a_name_becomes_one_harmless_component(name, safe):
    assert safe_name(name) == safe


def test_names_that_clash_once_made_safe_get_their_own_folders():
    assert unique_names(["a/b", "a_b", "..", "__", "a_b"]) == ["a_b", "a_b-2", "__", "__-2", "a_b-3"]


def test_a_path_is_refused_unless_it_lies_inside_the_folder(tmp_path):
    assert inside(tmp_path, safe_name(".."), "surface.npz") == tmp_path / "__" / "surface.npz"
    for parts in ([".."], ["a", "..", "..", "x"], ["/etc/passwd"]):
        with pytest.raises(ConfigError, match="would lie outside the output folder"):
            inside(tmp_path / "out", *parts)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="outside"):
        inside(tmp_path / "out", "link", "surface.npz")
