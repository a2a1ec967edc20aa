"""The tiny run shared by the federated tests (trained once per session)."""

from __future__ import annotations

import pytest

from tests.landscape.federated.cases import tiny_run
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("tiny-run"))
