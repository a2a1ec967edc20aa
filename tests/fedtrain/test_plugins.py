"""The import-path resolver: package.module:attribute found from the working directory or sys.path, clear errors otherwise."""

from __future__ import annotations

import sys

import pytest

from fedtrain.errors import ConfigError
from fedtrain.plugins import is_import_path, resolve


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "nets.py").write_text("class Net:\n    @staticmethod\n    def build():\n        return 42\n\nVALUE = 7\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "needs.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] in ("userpkg", "broken", "needs")]:
        monkeypatch.delitem(sys.modules, name)  # a module of an earlier test's folder
    return tmp_path


def test_resolves_a_module_attribute_and_a_dotted_attribute(user_module):
    assert resolve("userpkg.nets:VALUE") == 7
    assert resolve("userpkg.nets:Net.build")() == 42
    assert is_import_path("userpkg.nets:Net") and not is_import_path("cnn")


def test_the_working_directory_is_searched_like_python_m(tmp_path, monkeypatch):
    (tmp_path / "cwd_only_module_xyz.py").write_text("ANSWER = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert resolve("cwd_only_module_xyz:ANSWER") == 3


@pytest.mark.parametrize(("spec", "message"), [
    ("nocolon", "is not an import path: write the model factory as package.module:name"),
    ("userpkg.nets:", "is not an import path"),
    ("bad-name:x", "is not an import path"),
    ("userpkg.missing_module:x", "no module named 'userpkg.missing_module' was found"),
    ("userpkg.nets:Nope", r"module 'userpkg.nets' \(.*nets.py\) has no attribute 'Nope'"),
    ("broken:x", r"importing 'broken' failed \(RuntimeError: boom at import\)"),
    ("needs:x", "importing 'needs' failed: No module named 'not_installed_dependency_xyz'"),
])
def test_errors_say_what_is_wrong_and_how_to_fix_it(user_module, spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve(spec, what="model factory", option="--model")
    assert str(err.value).startswith(f"--model {spec!r}") and "\n" not in str(err.value)
