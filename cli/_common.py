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
