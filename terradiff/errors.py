"""terradiff's exception hierarchy.

Every error a user can fix (a bad file, band, config or checkpoint) derives from
:class:`TerradiffError`, so the CLI can print its message without a traceback. Messages name the
file/key involved, what was found, and how to fix it. :class:`DataWarning` is the category of
the warnings about data that was skipped or guessed.
"""

from __future__ import annotations


class TerradiffError(Exception):
    """Base class of every terradiff error.

    Attributes:
        exit_code: what the ``terradiff`` command exits with when this error ends it (2: the
            input, config or checkpoint given was unusable).
    """

    exit_code: int = 2


class StoppedBySignalError(TerradiffError):
    """The work was stopped by a signal (SIGINT = Ctrl-C, SIGTERM = ``kill``/``timeout``/a
    scheduler) after it saved what it could; the message says what was kept.

    Args:
        signum: the signal received.
        message: what was saved or cleaned up, and how to continue.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(signum, message)
        self.signum = int(signum)
        self.message = message
        self.exit_code = 128 + self.signum  # the shell convention: 130 for SIGINT, 143 for SIGTERM

    def __str__(self) -> str:
        return self.message


class DataError(TerradiffError, ValueError):
    """Input data that cannot be used (empty dataset, mixed band counts, bad scaling, ...)."""


class RasterError(DataError):
    """A raster that cannot be read or written (missing, corrupt, band out of range, ...)."""


class ConfigError(TerradiffError, ValueError):
    """An invalid experiment configuration."""


class CheckpointError(TerradiffError):
    """A checkpoint that is missing, incomplete or incompatible with the run."""


class WrongCheckpointError(CheckpointError):
    """A checkpoint of another kind (task or method) than the operation takes.

    The message reads ``"{path} is a {found}; {needed}"``, e.g. ``"runs/sr is a
    'super_resolution' checkpoint; estimate needs a 'carbon' one"``.

    Args:
        path: The checkpoint (or run folder) given.
        found: What it is, e.g. ``"'carbon' checkpoint"`` or ``"carbon/regression model"``.
        needed: What the operation takes instead (and how to get it).
    """

    def __init__(self, path: object, found: str, needed: str) -> None:
        super().__init__(path, found, needed)  # the arguments, so that the error pickles
        self.path = path
        self.found = found
        self.needed = needed

    def __str__(self) -> str:
        return f"{self.path} is a {self.found}; {self.needed}"


class MissingExtraError(TerradiffError, ImportError):
    """An optional library is not installed; the message names the extra that installs it
    (``pip install 'terradiff[xarray]'``)."""


class DataWarning(UserWarning):
    """Something in the data was skipped or guessed; the message says what."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataWarning",
    "MissingExtraError",
    "RasterError",
    "StoppedBySignalError",
    "TerradiffError",
    "WrongCheckpointError",
]
