"""The ``landscape`` command group: a thin click layer over the fedtrain and landscape APIs.

Commands live one per module and are imported only when invoked, so ``landscape --help`` stays fast
(torch and matplotlib are not imported to print help).
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> (module under fedlandscape_cli, function name, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "partition": ("partition", "partition", "Split a dataset over federated clients and summarise the split."),
    "train": ("train", "train", "Train FedAvg / FedSAM / FedASAM (+SWA) and write checkpoints."),
    "hessian": ("hessian", "hessian", "Top Hessian eigenvalues, trace and eigenvalue density of a checkpoint."),
    "plot-surface": ("surface", "plot_surface", "Filter-normalised loss surfaces, interpolations and model planes."),
    "clients": ("clients", "clients", "Per-client and pooled Hessians, client drift and the drift plane of federated checkpoints."),
    "flatness": ("flatness", "flatness", "Every flatness measure of finished runs' models and which one explains accuracy."),
    "figures": ("figures", "figures", "Assemble paper-style figures and tables from finished runs."),
    "reproduce": ("reproduce", "reproduce", "Run the paper's sharp-versus-flat comparison end to end."),
    "sweep": ("sweep", "sweep", "Tune rho (and eta, lr) with short seeded runs scored on a validation split."),
    "info": ("info", "info", "What a checkpoint, run, surface, Hessian report or reproduction is, and whether it is complete."),
}


def _available() -> dict[str, tuple[str, str, str]]:
    return {
        name: spec
        for name, spec in COMMANDS.items()
        if importlib.util.find_spec(f"{__name__}.{spec[0]}") is not None
    }


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_available())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _available().get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(f"{__name__}.{spec[0]}")
        return getattr(module, spec[1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, spec[2]) for name, spec in _available().items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fedlandscape")
def main() -> None:
    """fedlandscape: does this federated method converge to a flatter minimum, and does flatness explain accuracy?"""
