"""What a checkpoint records of the bands its net was trained on.

The contract this holds: *a model never receives bands it was not trained on*. A task builds a
:class:`BandInfo` from its training data, the checkpoint's ``config.json`` stores it under
``"bands"`` (:meth:`BandInfo.to_dict`), and every consumer (mapping, evaluation, sampling
outputs, resuming) reads the typed fields instead of a loose dictionary.

Saved layout (unchanged since the first checkpoint format, so old checkpoints load as they are)::

    {"count": 3, "names": ["red", "green", "blue"], "scaling": "uint8",
     "target": {"names": ["carbon"], "unit": "Mg C/ha", "scaling": {...}}}   # carbon only
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from terradiff.data.transforms import Scaling, get_scaling
from terradiff.errors import CheckpointError

ScalingSpec = str | dict[str, Any]


@dataclass(frozen=True)
class TargetInfo:
    """The predicted quantity of an image-to-image regression (e.g. carbon density).

    Attributes:
        names: band names of the target raster (``["carbon"]``).
        unit: its physical unit, written into output rasters (``"Mg C/ha"``).
        scaling: how target values map to the net's [-1, 1] (a :class:`Scaling` as a mapping).
    """

    names: tuple[str, ...]
    unit: str
    scaling: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "unit": self.unit, "scaling": dict(self.scaling)}


@dataclass(frozen=True)
class BandInfo:
    """The bands a net reads (and for generation/SR also writes).

    Attributes:
        count: number of bands, in the order the net expects them.
        names: their names (``B04``, ``red``, ...); may be empty for unnamed rasters.
        scaling: the scaling preset name or mapping that took raw values to [-1, 1].
        target: the regression target (carbon), or None for image-to-image of the same bands.
    """

    count: int
    names: tuple[str, ...] = ()
    scaling: ScalingSpec = "none"
    target: TargetInfo | None = None

    @property
    def name_list(self) -> list[str] | None:
        """The names as a list, or None when the bands are unnamed (raster writers take this)."""
        return list(self.names) or None

    def band_scaling(self) -> Scaling:
        """The :class:`Scaling` between raw band values and the net's [-1, 1]."""
        return get_scaling(self.scaling)

    def describe(self) -> str:
        """``3 bands ['red', 'green', 'blue']`` for error messages."""
        return f"{self.count} bands {list(self.names)}"

    def to_dict(self) -> dict[str, Any]:
        """The ``"bands"`` entry of ``config.json``."""
        record: dict[str, Any] = {
            "count": self.count,
            "names": list(self.names),
            "scaling": self.scaling,
        }
        if self.target is not None:
            record["target"] = self.target.to_dict()
        return record

    @classmethod
    def from_dict(cls, record: Any, source: str = "config.json") -> BandInfo:
        """Read the ``"bands"`` entry of a checkpoint's ``config.json``.

        Raises:
            CheckpointError: ``record`` is not a band record (names ``source`` and the fix).
        """
        fix = (
            "; the file is not a terradiff checkpoint config or was edited by hand. Point at a "
            "step_* folder written by 'terradiff train'"
        )
        if not isinstance(record, Mapping):
            raise CheckpointError(f"{source}: 'bands' must be a mapping, got {record!r}{fix}")
        try:
            count = int(record["count"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{source}: 'bands.count' is missing or not a number{fix}"
            ) from None
        if count < 1:
            raise CheckpointError(f"{source}: 'bands.count' is {count}{fix}")
        names = tuple(str(n) for n in (record.get("names") or ()))
        if names and len(names) != count:
            raise CheckpointError(
                f"{source}: 'bands' lists {len(names)} names for {count} bands{fix}"
            )
        scaling = record.get("scaling") or "none"
        if not isinstance(scaling, str | Mapping):
            raise CheckpointError(f"{source}: 'bands.scaling' must be a name or mapping{fix}")
        target = record.get("target")
        if target is not None:
            if not isinstance(target, Mapping) or not isinstance(target.get("scaling"), Mapping):
                raise CheckpointError(
                    f"{source}: 'bands.target' must hold names, unit and a scaling mapping{fix}"
                )
            target = TargetInfo(
                names=tuple(str(n) for n in (target.get("names") or ("target",))),
                unit=str(target.get("unit", "")),
                scaling=dict(target["scaling"]),
            )
        return cls(
            count=count,
            names=names,
            scaling=scaling if isinstance(scaling, str) else dict(scaling),
            target=target,
        )
