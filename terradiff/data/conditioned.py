"""Class labels and metadata on the items of a folder dataset, for conditional generation.

:class:`ConditionedDataset` wraps an :class:`~terradiff.data.datasets.ImageFolderDataset` or
:class:`~terradiff.data.datasets.GeoTiffChipDataset` (anything with ``files`` and dict items) and
returns its items with every key they have, plus:

* ``label`` (int; -1 = no class): the index, in a :class:`~terradiff.data.labels.ClassIndex`, of
  the file's class from the folder layout or from a ``path,class`` CSV. With a checkpoint's class
  index, a dataset restricted to some classes still gets the checkpoint's indices.
* ``metadata`` (float32 ``[F]``) and ``present`` (bool ``[F]``) when a
  :class:`~terradiff.data.metadata.MetadataSchema` is given: the file's normalised metadata, from
  the raster's header (:mod:`terradiff.data.scene_metadata`), a file-name date pattern and/or a
  sidecar table (whose values win over the header's).

``gsd`` is the ground size of one pixel *of the item*: when the dataset resizes (``crop="resize"``,
or a crop larger than the file), the file's GSD is scaled by the resize factor
(:func:`item_gsd_scale`). Metadata are read and normalised once, at construction, so a bad value
fails there and names its file.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from terradiff.data import transforms as T
from terradiff.data.dates import compile_date_pattern, date_from_name
from terradiff.data.folders import path_key
from terradiff.data.labels import NULL_LABEL, ClassIndex, class_index_for, read_label_csv
from terradiff.data.metadata import MetadataSchema, is_missing, read_metadata_sidecar
from terradiff.data.raster import inspect_raster
from terradiff.data.scene_metadata import read_scene_metadata
from terradiff.errors import ConfigError, DataError, DataWarning

PathTable = Mapping[Path, Any]
_MAX_LISTED = 3


def item_gsd_scale(
    height: int, width: int, image_size: int | Sequence[int] | None, crop: str
) -> float:
    """How much larger a pixel of a dataset item is than a pixel of its ``height`` x ``width``
    file, given the dataset's ``image_size`` and ``crop`` (the rules of
    :func:`terradiff.data.transforms.spatial_augment`).

    ``"resize"``: ``sqrt((height / th) (width / tw))``; ``"random"``/``"center"``: 1, or
    ``min(height, width) / max(th, tw)`` for a file smaller than the crop (resized up first);
    ``"none"`` or no ``image_size``: 1.
    """
    if image_size is None or crop == "none":
        return 1.0
    th, tw = T.size2(image_size)
    if crop == "resize":
        return math.sqrt((height / th) * (width / tw))
    if height < th or width < tw:
        return min(height, width) / max(th, tw)
    return 1.0


def _matched(table: PathTable, keys: list[Path], source: str) -> None:
    """Fail when no file is in ``table``; warn when some are not."""
    missing = [k for k in keys if k not in table]
    if len(missing) == len(keys):
        raise DataError(
            f"none of the dataset's {len(keys)} files is in the {source} (e.g. {keys[0]}); "
            "check its paths (relative ones are taken against the table's folder)"
        )
    if missing:
        warnings.warn(
            f"{len(missing)} of {len(keys)} files have no entry in the {source} (e.g. "
            f"{[str(m) for m in missing[:_MAX_LISTED]]}); they get none",
            DataWarning,
            stacklevel=3,
        )


class ConditionedDataset(Dataset):
    """A folder dataset whose items carry ``label`` and, with a schema, ``metadata``/``present``.

    Args:
        base: The dataset; it needs ``files`` (one path per file) and items that are dicts;
            item ``i`` is a crop of ``files[i // base.crops_per_image]`` (1 when absent).
        class_index: The classes and their order (a checkpoint's). Default: the base's class
            sub-folders (``base.classes``), or the sorted classes of ``labels``.
        labels: None: the class sub-folder of each file (``base.labels``); a ``path,class`` CSV
            (:func:`~terradiff.data.labels.read_label_csv`) or ``{path: class}``. Files without
            an entry get -1.
        schema: The metadata fields (a schema or field names); None: no ``metadata`` key.
        sidecar: A metadata table (:func:`~terradiff.data.metadata.read_metadata_sidecar`) or
            ``{path: {key: value}}``; its values win over the header's.
        from_raster: Read ``gsd``, ``lat``, ``lon`` (and dates/cloud cover from tags) from each
            file's header.
        date_pattern: A file-name date pattern (:func:`~terradiff.data.dates.date_from_name`).

    Raises:
        DataError: a base without ``files``, a class name that is not in ``class_index`` (with
            the valid names), tables that match no file, metadata out of range (naming the file).
        ConfigError: metadata sources without a schema, or a bad date pattern.
    """

    def __init__(
        self,
        base: Dataset,
        *,
        class_index: ClassIndex | None = None,
        labels: str | os.PathLike[str] | Mapping[Any, str] | None = None,
        schema: MetadataSchema | Sequence[str] | None = None,
        sidecar: str | os.PathLike[str] | Mapping[Any, Mapping[str, Any]] | None = None,
        from_raster: bool = False,
        date_pattern: str | None = None,
    ) -> None:
        self.base = base
        files = getattr(base, "files", None)
        if files is None:
            raise DataError(
                f"{type(base).__name__} has no 'files'; ConditionedDataset needs a folder dataset "
                "(ImageFolderDataset, GeoTiffChipDataset)"
            )
        self.files = [Path(f) for f in files]
        self.crops_per_image = int(getattr(base, "crops_per_image", 1))
        self._keys = [path_key(f) for f in self.files]
        self.class_index, self.labels = self._resolve_labels(class_index, labels)
        self.classes = list(self.class_index.names) if self.class_index else []
        if schema is not None and not isinstance(schema, MetadataSchema):
            schema = MetadataSchema(schema)
        if schema is None and (sidecar is not None or from_raster or date_pattern):
            raise ConfigError(
                "metadata sources (sidecar, from_raster, date_pattern) need a metadata schema: "
                "give schema=[...] with the fields to condition on"
            )
        self.schema = schema
        self._metadata: list[tuple[torch.Tensor, torch.Tensor]] = []
        if schema is not None:
            self._metadata = self._read_metadata(schema, sidecar, from_raster, date_pattern)

    # ---- construction ------------------------------------------------------------------------

    def _resolve_labels(
        self, class_index: ClassIndex | None, labels: Any
    ) -> tuple[ClassIndex | None, list[int]]:
        if labels is None:
            names = list(getattr(self.base, "classes", []) or [])
            base_labels = list(getattr(self.base, "labels", [NULL_LABEL] * len(self.files)))
            per_file = [names[i] if 0 <= i < len(names) else None for i in base_labels]
            source = f"the class folders of {getattr(self.base, 'root', 'the dataset')}"
            if class_index is None and names:
                class_index = ClassIndex(tuple(names))
        else:
            is_file = isinstance(labels, str | os.PathLike)
            source = f"label CSV {labels}" if is_file else "label table"
            table = (
                read_label_csv(labels) if is_file else {path_key(k): v for k, v in labels.items()}
            )
            _matched(table, self._keys, source)
            per_file = [table.get(k) for k in self._keys]
            if class_index is None:
                class_index = class_index_for(table)
        if class_index is None:
            return None, [NULL_LABEL] * len(self.files)
        out = []
        for path, name in zip(self.files, per_file, strict=True):
            out.append(NULL_LABEL if name is None else class_index.lookup(name, where=f"{path}"))
        return class_index, out

    def _read_metadata(
        self,
        schema: MetadataSchema,
        sidecar: Any,
        from_raster: bool,
        date_pattern: str | None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        table: Mapping[Path, Mapping[str, Any]] = {}
        if sidecar is not None:
            if isinstance(sidecar, str | os.PathLike):
                table, source = read_metadata_sidecar(sidecar), f"metadata sidecar {sidecar}"
            else:
                table, source = {path_key(k): v for k, v in sidecar.items()}, "metadata table"
            _matched(table, self._keys, source)
        pattern = compile_date_pattern(date_pattern) if date_pattern else None
        image_size = getattr(self.base, "image_size", None)
        crop = getattr(self.base, "crop", "none")
        out = []
        for path, key in zip(self.files, self._keys, strict=True):
            raw: dict[str, Any] = {}
            size: tuple[int, int] | None = None
            if from_raster:
                scene = read_scene_metadata(path, date_pattern=pattern)
                raw.update(scene.values)
                size = (scene.height, scene.width)
            elif pattern is not None:
                raw.update(date_from_name(path, pattern))
            entry = table.get(key, {})
            if not is_missing(entry.get("date")):  # the sidecar's date replaces the header's
                for name in ("year", "month", "day_of_year"):
                    raw.pop(name, None)
            raw.update(entry)
            if raw.get("gsd") is not None and "gsd" in schema.sources:
                if size is None:
                    info = inspect_raster(path)
                    size = (info.height, info.width)
                raw["gsd"] = float(raw["gsd"]) * item_gsd_scale(*size, image_size, crop)
            out.append(schema.normalise(raw, where=str(path)))
        return out

    # ---- torch Dataset -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to the base (its augmentation)."""
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def _add(self, item: dict[str, Any], index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        file_index = index // self.crops_per_image
        out = dict(item)
        out["label"] = int(self.labels[file_index])
        if self.schema is not None:
            values, present = self._metadata[file_index]
            out["metadata"], out["present"] = values.clone(), present.clone()
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._add(self.base[index], index)

    def get(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """Item ``index`` as augmented at ``epoch`` (the base's ``get``)."""
        return self._add(self.base.get(index, epoch), index)

    def condition_config(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild the conditioning: ``{"class_names": [...] or
        None, "metadata": {"fields": [...]} or None}``."""
        return {
            "class_names": list(self.class_index.names) if self.class_index else None,
            "metadata": self.schema.to_dict() if self.schema is not None else None,
        }

    def __getattr__(self, name: str) -> Any:
        """Other attributes (``band_names``, ``num_bands``, ``scaling``, ``root``): the base's."""
        base = self.__dict__.get("base")
        if base is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(base, name)

    def __repr__(self) -> str:
        fields = list(self.schema.fields) if self.schema is not None else None
        return f"ConditionedDataset({self.base!r}, classes={len(self.classes)}, metadata={fields})"


__all__ = ["ConditionedDataset", "item_gsd_scale"]
