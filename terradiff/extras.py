"""Optional libraries, imported on demand with an error that names the extra to install.

terradiff's core needs only its ``dependencies``; the ecosystem bridges use optional extras
(``pyproject.toml``, ``[project.optional-dependencies]``):

* ``xarray`` -- ``xarray`` and ``rioxarray``, for :mod:`terradiff.api`;
* ``stac`` -- ``pystac``, for STAC Items in and out (:mod:`terradiff.interop.stac`).

``diffusers`` is needed by nothing at run time (only by the tests that compare with it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from terradiff.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module``, or raise :class:`~terradiff.errors.MissingExtraError` naming ``extra``.

    Args:
        module: the importable name (``"rioxarray"``).
        extra: the terradiff extra that installs it (``"xarray"``).
        purpose: what needs it, for the message (``"terradiff.api"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        who = f"{purpose} needs" if purpose else "this needs"
        raise MissingExtraError(
            f"{who} the optional library {module!r}, which is not installed: "
            f"pip install 'terradiff[{extra}]'"
        ) from None
