"""The packages' public names: every exported name resolves to the object its owning module defines."""

from __future__ import annotations

import importlib

import pytest

import fedtrain
import landscape


@pytest.mark.parametrize("package", [fedtrain, landscape], ids=lambda p: p.__name__)
def test_every_export_resolves_to_its_owner(package):
    for name in package.__all__:
        owner = importlib.import_module(package._EXPORTS[name])
        assert getattr(package, name) is getattr(owner, name), name
    assert sorted(dir(package)) == sorted(package.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        landscape.nope  # noqa: B018


def test_every_package_of_the_tree_is_installed():
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root / "src").parts) for p in (root / "src").rglob("__init__.py")}
    assert found | {"fedlandscape_cli"} == listed
