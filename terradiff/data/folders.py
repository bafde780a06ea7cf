"""Finding image files and their classes in a folder tree (``root/<class>/.../*.ext``).

One rule, shared by the datasets (:mod:`terradiff.data.datasets`) and the class labels
(:mod:`terradiff.data.labels`): a file's class is the name of the first sub-folder of ``root`` on
its path (AID: ``aid/Airport/airport_1.jpg``; EuroSAT: ``train/Forest/Forest_12.tif``); files
directly in ``root`` have no class. Hidden files and folders (``.x``) are ignored; files are
matched by suffix, case-insensitively; everything is sorted by the POSIX path under ``root``, so
the result is the same on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from terradiff.errors import DataError

#: Suffixes read with Pillow (faster than GDAL for small 8-bit images); others go through rasterio.
PIL_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: Every suffix the image datasets read.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: GeoTIFF suffixes.
GEOTIFF_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff")


def path_key(path: str | os.PathLike[str]) -> Path:
    """The key under which tables (class CSVs, metadata sidecars) store a file: its absolute,
    resolved path (symbolic links followed), so ``a/../b.tif`` and ``b.tif`` meet."""
    return Path(path).expanduser().resolve()


def normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    """Suffixes in lower case with their leading dot (``"TIF"`` -> ``".tif"``)."""
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def scan_class_folders(
    root: str | os.PathLike[str],
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    classes: Sequence[str] | None = None,
) -> tuple[dict[str | None, list[Path]], list[str]]:
    """The files under ``root`` grouped by class sub-folder, and the class names.

    Args:
        root: The dataset folder.
        extensions: File suffixes to include (case-insensitive, with or without the dot).
        classes: Keep only these class sub-folders (all when None).

    Returns:
        ``(by_class, names)``: ``by_class`` maps a class name (None: files directly in ``root``)
        to its files sorted by path under ``root``; ``names`` are the class names that hold at
        least one matching file, sorted (code-point order, as ``sorted`` gives).

    Raises:
        DataError: a name of ``classes`` that is no sub-folder with matching files.
    """
    root = Path(root)
    suffixes = normalise_extensions(extensions)
    by_class: dict[str | None, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        key = rel.parts[0] if rel.parts else None
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(suffixes):
                continue
            by_class.setdefault(key, []).append(Path(dirpath) / name)
    for files in by_class.values():
        files.sort(key=lambda p: p.relative_to(root).as_posix())
    found = sorted(k for k in by_class if k is not None)
    if classes is not None:
        missing = [c for c in classes if c not in found]
        if missing:
            raise DataError(f"classes {missing} not found under {root}; available classes: {found}")
        wanted = sorted(set(classes))
        by_class = {k: v for k, v in by_class.items() if k in wanted}
        found = wanted
    return by_class, found


__all__ = [
    "GEOTIFF_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "PIL_EXTENSIONS",
    "normalise_extensions",
    "path_key",
    "scan_class_folders",
]
