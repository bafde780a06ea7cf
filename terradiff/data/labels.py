"""Class names and per-file class labels for conditional generation.

A :class:`ClassIndex` is the fixed list of class names a model is trained on: name -> index for
the data, index -> name for samples and reports, and a JSON form stored in the checkpoint so a
model is always asked for its own classes by name. Index ``-1`` (:data:`NULL_LABEL`) means "no
class": unlabelled items, and the unconditional branch of classifier-free guidance.

Labels come from one of two sources:

* the folder layout ``<root>/<class>/*.ext`` (AID, EuroSAT): :func:`folder_labels`, with the rule
  of the datasets (:func:`terradiff.data.folders.scan_class_folders`);
* a CSV with the columns ``path,class`` (``label`` is accepted for ``class``):
  :func:`read_label_csv`; relative paths are taken against the CSV's folder.

Both give ``{file: class name}`` keyed by :func:`~terradiff.data.folders.path_key`; the
:class:`ClassIndex` turns names into indices (:meth:`ClassIndex.lookup`), with an error that
lists the valid names and suggests the closest one for a misspelt class.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from terradiff.data.folders import IMAGE_EXTENSIONS, path_key, scan_class_folders
from terradiff.errors import DataError

#: The label of an item without a class (and of the "null class" of classifier-free guidance).
NULL_LABEL = -1
#: The column names a label CSV may use for the class.
CLASS_COLUMNS: tuple[str, ...] = ("class", "label")
_MAX_LISTED = 3


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` hint for a wrong ``name``, or ``""`` when nothing is close.

    A choice equal to ``name`` up to case, spaces, ``-`` and ``_`` wins; otherwise the closest
    choices by :func:`difflib.get_close_matches` (at most three, similarity >= 0.6).
    """
    options = list(choices)

    def squash(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch not in " -_")

    same = [c for c in options if squash(c) == squash(name)]
    close = same or difflib.get_close_matches(name, options, n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


@dataclass(frozen=True)
class ClassIndex:
    """The class names of a model in a fixed order: name <-> index.

    Attributes:
        names: the class names; the index of a class is its position here. Build it with
            :meth:`from_names` (sorted, the order of the folder datasets), :meth:`from_folder` or
            :meth:`from_dict` (a checkpoint's order, kept as stored).

    Raises:
        DataError: an empty list, an empty or non-string name, or a name given twice.
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        if not names:
            raise DataError("a ClassIndex needs at least one class name; got none")
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise DataError(f"class names must be non-empty strings; got {bad[:_MAX_LISTED]}")
        twice = sorted(n for n, count in Counter(names).items() if count > 1)
        if twice:
            raise DataError(f"class names must be unique; {twice} appear more than once")

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def from_names(cls, names: Iterable[str], *, sort: bool = True) -> ClassIndex:
        """The distinct ``names``, sorted (default, code-point order) or in first-seen order."""
        unique = list(dict.fromkeys(names))
        return cls(tuple(sorted(unique) if sort else unique))

    @classmethod
    def from_folder(
        cls, root: str | os.PathLike[str], extensions: Sequence[str] = IMAGE_EXTENSIONS
    ) -> ClassIndex:
        """The class sub-folders of ``root`` that hold files with ``extensions``, sorted.

        Raises:
            DataError: a missing folder, or one without class sub-folders.
        """
        _check_folder(root)
        _, names = scan_class_folders(root, extensions)
        if not names:
            raise DataError(
                f"{root} has no class sub-folders with {list(extensions)} files; a labelled "
                "folder is laid out as <root>/<class>/<file> (or give a CSV of path,class)"
            )
        return cls(tuple(names))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the class index") -> ClassIndex:
        """Inverse of :meth:`to_dict`; ``source`` names where ``data`` came from in errors.

        Raises:
            DataError: no ``class_names`` list of strings in ``data``.
        """
        names = data.get("class_names") if isinstance(data, Mapping) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(
                f"{source}: 'class_names' must be a list of class-name strings, got "
                f"{names!r}; write it with ClassIndex.to_dict()"
            )
        return cls(tuple(names))

    @classmethod
    def from_json(cls, text: str, *, source: str = "the class index") -> ClassIndex:
        """Inverse of :meth:`to_json`.

        Raises:
            DataError: text that is not JSON or has no ``class_names`` list.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{source} is not valid JSON: {err}") from err
        return cls.from_dict(data, source=source)

    # ---- use -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, list[str]]:
        """``{"class_names": [...]}``, JSON-ready, for the checkpoint's config."""
        return {"class_names": list(self.names)}

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._positions

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def lookup(self, name: str, *, where: str = "") -> int:
        """The index of class ``name``.

        Args:
            name: A class name, exactly as stored (case matters).
            where: Where the name came from, for the error (e.g. ``"labels.csv row 4"``).

        Raises:
            DataError: an unknown name; the message lists the valid names and suggests the
                closest one.
        """
        index = self._positions.get(name)
        if index is None:
            origin = f" in {where}" if where else ""
            raise DataError(
                f"unknown class {name!r}{origin}{did_you_mean(str(name), self.names)}; the "
                f"{len(self.names)} valid classes are {list(self.names)}"
            )
        return index

    def name(self, index: int) -> str:
        """The class name of ``index``.

        Raises:
            DataError: an index outside ``0 .. len - 1`` (``-1`` is "no class", which has no name).
        """
        if not 0 <= int(index) < len(self.names):
            raise DataError(
                f"class index {index} out of range: valid indices are 0..{len(self.names) - 1} "
                f"({len(self.names)} classes); {NULL_LABEL} means no class"
            )
        return self.names[int(index)]

    def encode(self, names: Iterable[str | None]) -> list[int]:
        """Indices of ``names``; None becomes :data:`NULL_LABEL` (no class)."""
        return [NULL_LABEL if n is None else self.lookup(n) for n in names]

    def decode(self, indices: Iterable[int]) -> list[str | None]:
        """Names of ``indices``; :data:`NULL_LABEL` becomes None."""
        return [None if int(i) == NULL_LABEL else self.name(i) for i in indices]


def _check_folder(root: str | os.PathLike[str]) -> None:
    if not Path(root).is_dir():
        raise DataError(
            f"dataset folder not found: {root} (resolved from {Path.cwd()}); check the path"
        )


def folder_labels(
    root: str | os.PathLike[str],
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    classes: Sequence[str] | None = None,
) -> dict[Path, str]:
    """``{file: class}`` for the files in the class sub-folders of ``root`` (files directly in
    ``root`` have no class and are left out), keyed by
    :func:`~terradiff.data.folders.path_key`.

    Raises:
        DataError: a missing folder, or a name of ``classes`` that is no sub-folder.
    """
    _check_folder(root)
    by_class, _ = scan_class_folders(root, extensions, classes)
    return {
        path_key(p): name for name, files in by_class.items() if name is not None for p in files
    }


def read_label_csv(path: str | os.PathLike[str], *, check_files: bool = True) -> dict[Path, str]:
    """``{file: class}`` from a CSV with a header and the columns ``path`` and ``class``.

    Relative paths are resolved against the CSV's folder; other columns are ignored (so one
    CSV may carry classes and metadata). A row with an empty class leaves its file unlabelled.

    Args:
        path: The CSV file.
        check_files: Fail when a listed file does not exist.

    Returns:
        Class names keyed by :func:`~terradiff.data.folders.path_key`.

    Raises:
        DataError: a missing file or column, an empty path, a file listed twice with different
            classes, listed files that do not exist.
    """
    path = Path(path)
    rows = read_csv_rows(path)
    header = rows[0].keys() if rows else []
    column = next((c for c in CLASS_COLUMNS if c in header), None)
    if "path" not in header or column is None:
        raise DataError(
            f"label CSV {path} needs the columns 'path' and 'class'; found {list(header)}. "
            "Write a header line 'path,class' and one row per file"
        )
    labels: dict[Path, str] = {}
    missing: list[str] = []
    for number, row in enumerate(rows, start=2):
        name = (row.get(column) or "").strip()
        file = (row.get("path") or "").strip()
        if not file:
            raise DataError(f"label CSV {path} line {number}: empty 'path'; give the file's path")
        if not name:
            continue
        target = path_key(path.parent / file)
        if labels.get(target, name) != name:
            raise DataError(
                f"label CSV {path} line {number}: {file} is labelled {labels[target]!r} and "
                f"{name!r}; keep one row per file"
            )
        labels[target] = name
        if check_files and not target.is_file():
            missing.append(file)
    if missing:
        raise DataError(
            f"label CSV {path} lists {len(missing)} file(s) that do not exist, e.g. "
            f"{missing[:_MAX_LISTED]}; paths are relative to the CSV's folder {path.parent}"
        )
    return labels


def read_csv_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a CSV with a header (UTF-8, an Excel BOM allowed), column names stripped.

    Raises:
        DataError: a missing or unreadable file, or one without rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file not found: {path} (resolved from {Path.cwd()}); check the path")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [
                {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in row.items()}
                for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read CSV {path}: {err}; save it as UTF-8 text") from err
    if not rows:
        raise DataError(f"CSV {path} has no rows below its header; add one row per file")
    return rows


def class_index_for(labels: Mapping[Any, str]) -> ClassIndex:
    """The sorted :class:`ClassIndex` of the class names used in ``labels``.

    Raises:
        DataError: ``labels`` is empty.
    """
    if not labels:
        raise DataError("no labelled files; a class index needs at least one class")
    return ClassIndex.from_names(labels.values())


__all__ = [
    "CLASS_COLUMNS",
    "NULL_LABEL",
    "ClassIndex",
    "class_index_for",
    "did_you_mean",
    "folder_labels",
    "read_csv_rows",
    "read_label_csv",
]
