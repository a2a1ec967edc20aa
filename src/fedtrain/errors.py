"""The toolkit's exception hierarchy: every user-facing failure is one of these, with a message that says how to fix it."""

from __future__ import annotations


class LandscapeError(Exception):
    """Base class: a problem with the user's input that the CLI reports as one paragraph, without a traceback."""


class ConfigError(LandscapeError, ValueError):
    """A nonsensical or inconsistent setting (a negative rho, an unknown model, steps < 2...)."""


class DataNotFoundError(LandscapeError, FileNotFoundError):
    """A dataset's files are not where they were looked for."""


class DataFormatError(LandscapeError, ValueError):
    """A file exists but is truncated, corrupt or of another format (a dataset's, a run's records, a plan...; see fedtrain.validate)."""


class CheckpointError(LandscapeError, ValueError):
    """A checkpoint is missing, truncated, foreign or incompatible with the request."""


class DirectoryBusyError(LandscapeError):
    """Another process (or a holder that cannot be checked from here) writes the directory this command would write."""


class OutputError(LandscapeError, OSError):
    """The operating system refused a write (no space, permission, a path below a regular file); what existed is kept."""
