"""Paired temporal dataset: aligned crops of (before, after) images of one place, with metadata.

The data of "before image + condition -> after image" generation (DiffusionSat's temporal
setting ``X_post ~ p(X | X_pre, C)``, Khanna et al. 2024, Sec. 3.3). From
:class:`~terradiff.data.temporal.series.TimeSeries` (one place, one grid), every ordered pair of
dates ``(source, target)`` -- source earlier than target with ``order="forward"``, both
directions with ``"both"`` -- gives items::

    {"before": [C, h, w] in [-1, 1], "after": [C, h, w] in [-1, 1],
     "valid": [1, h, w] (both dates hold clear data), "metadata": [F], "present": [F],
     "place": str, "source_date": str, "target_date": str, "source": str, "target": str,
     "window": long [4] (top, left, h, w) on the series' grid}

with the metadata of :class:`~terradiff.data.temporal.pair_metadata.PairSchema` (target date,
source date, years apart). Pixels invalid in either image are 0 in both.

**Splits** (``holdout``; fixed, no randomness, never a training pixel of a target in the test):

* ``"date"`` (default): in every series the last ``test_dates`` dates (or the dates whose labels
  are listed; or, with a mapping ``{place: [labels]}``, other dates per place, so that a month held
  out at one place can stay a training target at another) are held out. Train pairs use only the
  other dates, as source and as target; test pairs have a held-out target and a training-date
  source (the before image is an input, known at forecast time). So every test target is an image
  the model never saw.
* ``"place"``: the series whose place names are listed in ``test_places`` are the test set (all
  their pairs), the others the train set.
* ``"region"``: each series' columns are cut at ``round(width * (1 - test_fraction))``; train crops
  lie wholly left of the cut, test crops wholly right of it (held-out ground, all dates).

**Crops**: training items are ``crops_per_pair`` random ``crop_size`` crops per pair, the same
window in both images, with random flips (both images alike); each is a pure function of
``(seed, epoch, index)``. Test items are the fixed grid of non-overlapping crops covering the
test region of every pair (:func:`~terradiff.data.crops.grid_windows`), without flips.

**Scaling**: one :class:`~terradiff.data.transforms.Scaling` for every image; default
``"uint8"`` (/255) for 8-bit files and ``"sentinel2"`` (/10,000) otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from terradiff.data import transforms as T
from terradiff.data.crops import check_fits, grid_windows, random_window
from terradiff.data.temporal.pair_metadata import PairSchema
from terradiff.data.temporal.series import TimeSeries, read_series_image
from terradiff.errors import DataError

__all__ = ["HOLDOUTS", "TemporalPair", "TemporalPairDataset"]

HOLDOUTS: tuple[str, ...] = ("date", "place", "region")
_ORDERS = ("forward", "both")
_SPLITS = ("train", "test")


HeldOutDates = int | Sequence[str] | Mapping[str, Sequence[str]]
"""``test_dates``: a count of latest dates, date labels, or date labels per place."""


@dataclass(frozen=True)
class TemporalPair:
    """One (source, target) pair: indices into ``dataset.series[series].images``."""

    series: int
    source: int
    target: int


class TemporalPairDataset(Dataset):
    """Aligned (before, after) crops with pair metadata (see the module docstring).

    Args:
        series: The time series (one per place); all must have the same number of bands.
        split: ``"train"`` or ``"test"``.
        holdout: ``"date"``, ``"place"`` or ``"region"``.
        test_dates: ``"date"``: how many of the latest dates of each series are held out, or
            their labels (``["2019-09-04"]``, ``["11 (Aug)"]``), or labels per place
            (``{"0060c0a5": ["03 (Dec)"], "288afc34": ["06 (Mar)"]}``; an unlisted place holds
            none out).
        test_places: ``"place"``: the held-out place names.
        test_fraction: ``"region"``: the held-out share of the columns (the right side).
        crop_size: Crop side in pixels.
        crops_per_pair: Training items per pair (each a random crop).
        order: ``"forward"`` (before earlier than after) or ``"both"``.
        schema: The pair metadata (default :class:`PairSchema`\\ ()).
        scaling: A scaling preset or :class:`~terradiff.data.transforms.Scaling` for every
            image; None: by data type (see the module docstring).
        random_flip: Random flips of training items.
        seed: Seeds the training crops and flips.

    Raises:
        DataError: No series, different band counts, an unknown option, a held-out label that
            is no date of any series, a crop that does not fit, or a split without any pair.
    """

    def __init__(
        self,
        series: Sequence[TimeSeries],
        *,
        split: str = "train",
        holdout: str = "date",
        test_dates: int | Sequence[str] | Mapping[str, Sequence[str]] = 1,
        test_places: Sequence[str] = (),
        test_fraction: float = 0.25,
        crop_size: int = 64,
        crops_per_pair: int = 4,
        order: str = "forward",
        schema: PairSchema | None = None,
        scaling: str | T.Scaling | None = None,
        random_flip: bool = True,
        seed: int = 0,
    ) -> None:
        for name, value, valid in (
            ("split", split, _SPLITS),
            ("holdout", holdout, HOLDOUTS),
            ("order", order, _ORDERS),
        ):
            if value not in valid:
                raise DataError(f"{name} must be one of {list(valid)}, got {value!r}")
        if not series:
            raise DataError("TemporalPairDataset needs at least one time series")
        if crops_per_pair < 1:
            raise DataError(f"crops_per_pair must be >= 1, got {crops_per_pair}")
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.series = list(series)
        first = self.series[0]
        for s in self.series[1:]:
            if len(s.bands) != len(first.bands):
                raise DataError(
                    f"place {s.place} has {len(s.bands)} bands, {first.place} has "
                    f"{len(first.bands)}; select the same bands in every series"
                )
        self.split, self.holdout, self.order = split, holdout, order
        self.crop_size = int(crop_size)
        self.crops_per_pair = int(crops_per_pair)
        self.random_flip = bool(random_flip) and split == "train"
        self.seed = int(seed)
        self.epoch = 0
        self.schema = schema if schema is not None else PairSchema()
        default = "uint8" if first.dtype == "uint8" else "sentinel2"
        self.scaling = T.get_scaling(scaling if scaling is not None else default)
        self.band_names = list(first.band_names)
        self._columns = [self._column_band(s, test_fraction) for s in self.series]
        self.pairs = self._make_pairs(test_dates, set(test_places))
        if not self.pairs:
            raise DataError(
                f"the {split} split of holdout={holdout!r} holds no pair of dates (places "
                f"{[s.place for s in self.series]}, order={order!r}); hold out fewer dates, "
                "use order='both', or another holdout"
            )
        self._metadata = [self._pair_metadata(p) for p in self.pairs]
        self._windows: list[tuple[int, int, int]] = []  # test: (pair, top, left)
        if split == "test":
            for k, pair in enumerate(self.pairs):
                s = self.series[pair.series]
                left, right = self._columns[pair.series]
                for top, col in grid_windows(s.height, left, right, self.crop_size):
                    self._windows.append((k, top, col))
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    # ---- construction ------------------------------------------------------------------------

    def _column_band(self, s: TimeSeries, test_fraction: float) -> tuple[int, int]:
        left, right = 0, s.width
        if self.holdout == "region":
            cut = round(s.width * (1.0 - test_fraction))
            left, right = (0, cut) if self.split == "train" else (cut, s.width)
        check_fits(s.height, right, left, self.crop_size, f"place {s.place} ({self.split} region)")
        return left, right

    def _held_out_dates(self, s: TimeSeries, test_dates: HeldOutDates) -> set[int]:
        if isinstance(test_dates, Mapping):
            test_dates = list(test_dates.get(s.place, []))
        if isinstance(test_dates, int):
            if test_dates < 1:
                raise DataError(
                    f"test_dates must be >= 1 or a list of date labels, got {test_dates}"
                )
            return set(range(max(len(s) - test_dates, 0), len(s)))
        return {i for i, label in enumerate(s.labels) if label in set(test_dates)}

    def _make_pairs(self, test_dates: HeldOutDates, test_places: set[str]) -> list[TemporalPair]:
        places = {s.place for s in self.series}
        if self.holdout == "place":
            unknown = sorted(test_places - places)
            if unknown or not test_places:
                raise DataError(
                    f"holdout='place' needs test_places among {sorted(places)}, got "
                    f"{sorted(test_places)}"
                )
        if self.holdout == "date" and isinstance(test_dates, Mapping):
            self._check_dates_per_place(test_dates)
        elif self.holdout == "date" and not isinstance(test_dates, int):
            labels = {label for s in self.series for label in s.labels}
            unknown = sorted(set(test_dates) - labels)
            if unknown:
                raise DataError(
                    f"held-out dates {unknown} are no date of any series; the dates are "
                    f"{sorted(labels)}"
                )
        pairs = []
        for k, s in enumerate(self.series):
            if self.holdout == "place" and (s.place in test_places) != (self.split == "test"):
                continue
            held = self._held_out_dates(s, test_dates) if self.holdout == "date" else set()
            for i in range(len(s)):
                for j in range(len(s)):
                    if i == j or (self.order == "forward" and s.images[i].time >= s.images[j].time):
                        continue
                    if self.holdout == "date":
                        wanted = j in held if self.split == "test" else j not in held
                        if i in held or not wanted:
                            continue
                    pairs.append(TemporalPair(k, i, j))
        return pairs

    def _check_dates_per_place(self, test_dates: Mapping[str, Sequence[str]]) -> None:
        """Every place of the mapping is a series and every label one of its dates."""
        by_place = {s.place: set(s.labels) for s in self.series}
        unknown = sorted(set(test_dates) - set(by_place))
        if unknown:
            raise DataError(
                f"held-out dates name places {unknown} that are no series; the places are "
                f"{sorted(by_place)}"
            )
        for place, labels in test_dates.items():
            missing = sorted(set(labels) - by_place[place])
            if missing:
                raise DataError(
                    f"held-out dates {missing} are no date of place {place}; its dates are "
                    f"{sorted(by_place[place])}"
                )

    def _pair_metadata(self, pair: TemporalPair) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.series[pair.series]
        a, b = s.images[pair.source], s.images[pair.target]
        return self.schema.normalise(
            a.date, b.date, b.time - a.time, where=f"pair {a.path.name} -> {b.path.name}"
        )

    def metadata_items(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(values [F], present [F])`` of every pair, in :attr:`pairs` order (copies)."""
        return [(values.clone(), present.clone()) for values, present in self._metadata]

    # ---- torch Dataset -----------------------------------------------------------------------

    @property
    def num_bands(self) -> int:
        """Bands of each image."""
        return len(self.band_names)

    def __len__(self) -> int:
        if self.split == "test":
            return len(self._windows)
        return len(self.pairs) * self.crops_per_pair

    def set_epoch(self, epoch: int) -> None:
        """Use the crops and flips of ``epoch`` for the following items."""
        self.epoch = int(epoch)

    def load(self, series: int, image: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image [C, H, W] in [-1, 1] with invalid pixels 0, valid [H, W])`` (cached)."""
        key = (series, image)
        if key not in self._cache:
            s = self.series[series]
            array, valid = read_series_image(s, s.images[image])
            scaled = np.asarray(self.scaling.to_model(array.astype(np.float32)), np.float32)
            valid = valid & np.isfinite(scaled).all(axis=0)
            scaled = np.where(valid[None], np.clip(np.nan_to_num(scaled), -1, 1), 0.0)
            self._cache[key] = (scaled.astype(np.float32), valid)
        return self._cache[key]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """Item ``index`` (as cropped and flipped at ``epoch`` for the train split)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        epoch = self.epoch if epoch is None else int(epoch)
        size = self.crop_size
        generator = T.item_generator(self.seed, epoch, index)
        if self.split == "test":
            pair_index, top, left = self._windows[index]
        else:
            pair_index = index // self.crops_per_pair
            pair = self.pairs[pair_index]
            col_left, col_right = self._columns[pair.series]
            height = self.series[pair.series].height
            top, left = random_window(height, col_left, col_right, size, generator)
        pair = self.pairs[pair_index]
        before, valid_a = self.load(pair.series, pair.source)
        after, valid_b = self.load(pair.series, pair.target)
        rows, cols = slice(top, top + size), slice(left, left + size)
        valid = (valid_a[rows, cols] & valid_b[rows, cols])[None].astype(np.float32)
        stacked = torch.from_numpy(
            np.concatenate([before[:, rows, cols] * valid, after[:, rows, cols] * valid, valid])
        )
        if self.random_flip:
            stacked = T.random_flip(stacked, generator, horizontal=True, vertical=True)
        c = self.num_bands
        s = self.series[pair.series]
        a, b = s.images[pair.source], s.images[pair.target]
        values, present = self._metadata[pair_index]
        return {
            "before": stacked[:c].contiguous(),
            "after": stacked[c : 2 * c].contiguous(),
            "valid": stacked[2 * c :].contiguous(),
            "metadata": values.clone(),
            "present": present.clone(),
            "place": s.place,
            "source_date": a.label,
            "target_date": b.label,
            "source": str(a.path),
            "target": str(b.path),
            "window": torch.tensor([top, left, size, size]),
        }

    def describe(self) -> list[str]:
        """One line per pair: ``place: source -> target (+years)``, for reports."""
        out = []
        for pair in self.pairs:
            s = self.series[pair.series]
            a, b = s.images[pair.source], s.images[pair.target]
            out.append(f"{s.place}: {a.label} -> {b.label} ({b.time - a.time:+.2f} y)")
        return out

    def __repr__(self) -> str:
        return (
            f"TemporalPairDataset(split={self.split!r}, holdout={self.holdout!r}, "
            f"pairs={len(self.pairs)}, items={len(self)}, crop={self.crop_size})"
        )
