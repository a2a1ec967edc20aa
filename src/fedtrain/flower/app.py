"""The apps ``flwr run flower_app`` starts: the ClientApp, and a ServerApp that reads the run from Flower's run config.

Run config (``[tool.flwr.app.config]`` of ``flower_app/pyproject.toml``, or ``flwr run --run-config``):
``out`` (the run directory, required), ``preset`` and ``config-file`` (as ``landscape train``; ``""`` for
none), ``resume`` / ``overwrite`` (booleans), and any training setting by its name (``algorithm``,
``rounds``, ...; ``""`` for unset), which overrides the preset and the file. ``flwr run --run-config`` may
set only keys the app's ``pyproject.toml`` lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from logging import ERROR, INFO

from flwr.app import Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from fedtrain.config import TrainConfig, resolve_config
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.flower.client_app import make_client_app
from fedtrain.flower.server_app import flower_round_fn
from fedtrain.io import to_json
from fedtrain.run import load_run_config, train

__all__ = ["RunRequest", "run_request", "client_app", "server_app"]

_OWN_KEYS = ("out", "preset", "config-file", "resume", "overwrite")


@dataclass(frozen=True)
class RunRequest:
    """What a ``flwr run`` asks for: the settings, where the run goes, and whether it continues one."""

    config: TrainConfig
    out: str
    resume: bool = False
    overwrite: bool = False


def run_request(run_config: Mapping[str, object]) -> RunRequest:
    """The run a Flower run config describes (see the module docstring).

    Raises:
        ConfigError: no ``out``, or invalid settings.
    """
    out = str(run_config.get("out", "") or "")
    if not out:
        raise ConfigError("The Flower run config needs out, the run directory: flwr run flower_app --run-config \"out='runs/x'\".")
    resume = bool(run_config.get("resume", False))
    overrides = {k: v for k, v in run_config.items() if k not in _OWN_KEYS and v != ""}
    if resume:
        config = load_run_config(out)
        config = resolve_config(None, None, {**config.to_dict(), **overrides}) if overrides else config
    else:
        config = resolve_config(str(run_config.get("preset") or "") or None, str(run_config.get("config-file") or "") or None, overrides)
    return RunRequest(config=config, out=out, resume=resume, overwrite=bool(run_config.get("overwrite", False)))


client_app = make_client_app()
server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Train the run the run config describes, its rounds on this federation's SuperNodes; log the summary."""
    try:
        request = run_request(context.run_config)
        summary = train(request.config, request.out, resume=request.resume, overwrite=request.overwrite,
                        round_fn=flower_round_fn(grid))
    except LandscapeError as err:
        log(ERROR, "%s", err)
        raise
    log(INFO, "fedlandscape summary: %s", to_json(summary))
