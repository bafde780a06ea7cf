"""Read a local weights file (``.safetensors`` or a torch ``.pth``/``.pt``) into a state dict.

This module's one job: the single place where terradiff turns a user-supplied weights file into
tensors. It never downloads anything and never unpickles arbitrary objects: safetensors files go
through :func:`safetensors.torch.load_file`; anything else through
``torch.load(..., weights_only=True)``, which only rebuilds tensors and plain containers. What the
keys mean (torchvision names, LPIPS heads, a ``module.`` prefix...) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from terradiff.errors import CheckpointError

DEFAULT_HINT = (
    "terradiff never downloads weights: copy the file to this machine and pass its local path"
)


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """A weights file that was not given or does not exist.

    Both a :class:`~terradiff.errors.CheckpointError` (so the CLI prints it without a traceback)
    and a :class:`FileNotFoundError` (what plain Python callers expect of a missing file).
    """


def read_weights(
    path: str | Path | None, *, what: str = "weights", hint: str = DEFAULT_HINT
) -> dict[str, Tensor]:
    """Read the tensors of a local weights file.

    ``.safetensors`` files are read with :func:`safetensors.torch.load_file`; any other suffix
    (``.pth``, ``.pt``) with ``torch.load(path, map_location="cpu", weights_only=True)``. A torch
    file that wraps its tensors as ``{"state_dict": {...}, ...}`` (a training checkpoint) is
    unwrapped. Keys are returned as stored.

    Args:
        path: The file; ``None`` means none was given (an error naming ``what``).
        what: What the file holds, for messages (e.g. ``"VGG weights"``): the error reads
            ``"<what> file <path> not found. <hint>"``.
        hint: How to obtain the file, appended to the not-found message.

    Returns:
        The state dict (CPU tensors).

    Raises:
        WeightsNotFoundError: ``path`` is None or not a file (a ``CheckpointError`` and a
            ``FileNotFoundError``); the message names the file and repeats ``hint``.
        CheckpointError: the file holds something other than a dict of tensors.
    """
    if path is None:
        raise WeightsNotFoundError(f"no {what} file given. {hint}")
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} file {path} not found. {hint}")
    if path.suffix == ".safetensors":
        state: object = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


__all__ = ["DEFAULT_HINT", "WeightsNotFoundError", "read_weights"]
