"""Shared CLI plumbing: turning library errors into one-paragraph messages, common options, JSON output."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Map the toolkit's ``LandscapeError`` and any operating-system error to a clean ``click`` error: one paragraph, exit 1, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fedtrain.errors import LandscapeError

        try:
            return func(*args, **kwargs)
        except LandscapeError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:  # what the library's atomic writers did not already turn into an OutputError (mkdir, reads)
            where = f"{err.filename}" if err.filename is not None else "a file or folder"
            raise click.ClickException(
                f"Cannot use {where}: {err.strerror or err}. Every file written so far is complete (files are written "
                "to a temporary file and renamed). Check the path, its permissions and the free space, then run the "
                "command again."
            ) from None

    return wrapper  # type: ignore[return-value]


def seed_option(default: int = 0, help: str = "Seed of every random choice; recorded with the result.") -> Callable[[F], F]:
    """``--seed INTEGER``."""
    return click.option("--seed", type=int, default=default, show_default=True, help=help)


def data_dir_option(func: F) -> F:
    """``--data-dir PATH``: where datasets are looked for first."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder holding the dataset files (required for CIFAR; Fashion-MNIST is found under /usr/share/datasets).",
    )(func)


def device_option(default: str | None = "auto", help: str = "Where to compute: auto (a GPU when there is one), cpu, cuda or cuda:N.") -> Callable[[F], F]:
    """``--device auto|cpu|cuda|cuda:N`` (checked by the library's settings records, which say what is wrong)."""
    return click.option("--device", default=default, show_default=default is not None, metavar="auto|cpu|cuda|cuda:N", help=help)


def quiet_option(func: F) -> F:
    """``--quiet``: nothing on stderr but errors (results still go to stdout or their files)."""
    return click.option("--quiet", "-q", is_flag=True, default=False,
                        help="Print no progress or summary on stderr, only errors (results still go to stdout or --out).")(func)


def progress_printer(quiet: bool) -> Any:
    """The toolkit's progress callback for a command: a live line on a terminal, plain lines in a log, nothing with ``--quiet``."""
    import sys

    from fedtrain.progress import ProgressPrinter

    return ProgressPrinter(sys.stderr, quiet=quiet)


def foreign_model_options(func: F) -> F:
    """``--model``, ``--model-kwargs``, ``--dataset``, ``--data``: analyse a plain ``state_dict`` file trained elsewhere."""
    options = [
        click.option("--model", "foreign_model", default=None, metavar="cnn|mlp|resnet18-gn|package.module:factory",
                     help="Read the file as a plain PyTorch state_dict of this model: a built-in one, or your own class or "
                          "function (its module importable from the working directory or PYTHONPATH). Needs --dataset or --data."),
        click.option("--model-kwargs", "foreign_model_kwargs", default=None, metavar="JSON",
                     help='Arguments of --model as a JSON object, e.g. \'{"hidden": [64]}\' (built-in models take input_shape '
                          "and num_classes from the data)."),
        click.option("--dataset", "foreign_dataset", default=None, metavar="NAME",
                     help="The data of a --model state_dict: a dataset of this toolkit (fashion-mnist, cifar10, synthetic, ...)."),
        click.option("--data", "foreign_data", default=None, metavar="package.module:loader",
                     help="The data of a --model state_dict: your function returning (inputs, labels) tensors ready for the "
                          "model; called with 'train'/'test' when it takes an argument."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def foreign_spec(model: str | None, model_kwargs: str | None, dataset: str | None, data: str | None) -> Any:
    """The ``ForeignSpec`` of :func:`foreign_model_options`, or ``None`` for a toolkit checkpoint.

    Raises:
        ConfigError: data or arguments without ``--model``, or ``--model-kwargs`` that is not a JSON object.
    """
    import json

    from fedtrain.errors import ConfigError
    from fedtrain.foreign import ForeignSpec

    if model is None:
        given = [name for name, value in (("--model-kwargs", model_kwargs), ("--dataset", dataset), ("--data", data)) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} describe a plain state_dict file and need --model too (a toolkit "
                              "checkpoint knows its model and data).")
        return None
    try:
        kwargs = json.loads(model_kwargs) if model_kwargs is not None else {}
    except json.JSONDecodeError as err:
        raise ConfigError(f"--model-kwargs is not valid JSON ({err.msg} at character {err.pos}): write a JSON object, "
                          'e.g. \'{"hidden": [64]}\'.') from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--model-kwargs must be a JSON object of keyword arguments, got {type(kwargs).__name__}.")
    return ForeignSpec(model=model, model_kwargs=kwargs, dataset=dataset, data=data)
