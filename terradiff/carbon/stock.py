"""Carbon stock from forest inventory and biomass: the IIDM paper's pre-processing (Sec. 2.2).

The paper (the improved implicit diffusion model for forest carbon, Huize County) turns inventory
polygons into a per-pixel carbon-density target in three steps, implemented here as pure numpy
functions:

1. carbon stock of a polygon from its timber volume (the volume-derived biomass method)::

       C = V x delta x rho x gamma,    V = V_ha x area

   with ``delta`` the biomass expansion factor (volume of stems -> whole tree, default 1.90),
   ``rho`` the basic wood density (default 0.5 t/m3) and ``gamma`` the carbon fraction of dry
   biomass (default 0.5);
2. its distribution to the polygon's pixels by canopy-height weights normalised within the
   polygon, ``W_i = h_i / sum_j h_j`` and ``CD_i = C x W_i`` (so the pixels sum to ``C``);
3. the forest mask binarised to 0/255.

Biomass rasters (e.g. BioMassters' LiDAR AGB in t/ha) give carbon density directly:
``carbon = AGB x gamma`` (Mg C/ha).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terradiff.errors import DataError

HECTARE_M2 = 10_000.0


@dataclass(frozen=True)
class CarbonFactors:
    """The conversion factors of ``C = V x delta x rho x gamma`` (IIDM paper, Sec. 2.2).

    Attributes:
        volume_expansion: ``delta``, biomass expansion factor (dimensionless), default 1.90.
        basic_density: ``rho``, basic wood density in t/m3, default 0.5.
        carbon_fraction: ``gamma``, carbon per unit dry biomass, default 0.5.
    """

    volume_expansion: float = 1.90
    basic_density: float = 0.5
    carbon_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("volume_expansion", "basic_density", "carbon_fraction"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise DataError(f"carbon factor {name} must be a positive number, got {value}")
        if self.carbon_fraction > 1:
            raise DataError(
                f"carbon_fraction is a fraction of dry biomass (0-1], got {self.carbon_fraction}"
            )

    @property
    def carbon_per_m3(self) -> float:
        """Mg of carbon per m3 of stem volume: ``delta x rho x gamma``."""
        return self.volume_expansion * self.basic_density * self.carbon_fraction


DEFAULT_FACTORS = CarbonFactors()
"""The IIDM paper's factors: delta 1.90, rho 0.5 t/m3, gamma 0.5."""


def carbon_from_volume(
    volume_m3: np.ndarray | float, factors: CarbonFactors = DEFAULT_FACTORS
) -> np.ndarray:
    """Carbon stock ``C = V x delta x rho x gamma`` in Mg C from stem volume ``V`` in m3.

    Per hectare in, per hectare out: a volume of 200 m3/ha gives 95 Mg C/ha with the defaults.
    """
    volume = np.asarray(volume_m3, dtype=np.float64)
    return volume * factors.carbon_per_m3


def volume_from_per_hectare(
    volume_per_ha: np.ndarray | float, area_m2: np.ndarray | float
) -> np.ndarray:
    """Total stem volume ``V = V_ha x area`` (m3) of a polygon of ``area_m2`` square metres."""
    return np.asarray(volume_per_ha, dtype=np.float64) * (
        np.asarray(area_m2, dtype=np.float64) / HECTARE_M2
    )


def carbon_from_biomass(agb_t_per_ha: np.ndarray, carbon_fraction: float = 0.5) -> np.ndarray:
    """Carbon density (Mg C/ha) from above-ground biomass (t/ha = Mg/ha): ``AGB x gamma``."""
    if not 0 < carbon_fraction <= 1:
        raise DataError(f"carbon_fraction must be in (0, 1], got {carbon_fraction}")
    return np.asarray(agb_t_per_ha, dtype=np.float64) * carbon_fraction


def height_weights(canopy_height: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """``W_i = h_i / sum_j h_j`` over the pixels ``inside`` a polygon (0 outside).

    Heights below 0 or not finite count as 0. When every inside pixel has height 0 the weights are
    uniform (the polygon's carbon is spread evenly rather than lost).

    Raises:
        DataError: a polygon with no pixel.
    """
    h = np.asarray(canopy_height, dtype=np.float64)
    inside = np.ones(h.shape, bool) if inside is None else np.asarray(inside, bool)
    if inside.shape != h.shape:
        raise DataError(f"mask shape {inside.shape} differs from the height grid {h.shape}")
    if not inside.any():
        raise DataError("the polygon covers no pixel of the canopy-height grid")
    h = np.where(inside & np.isfinite(h) & (h > 0), h, 0.0)
    total = h.sum()
    if total == 0:
        return inside / inside.sum()
    return h / total


def distribute_carbon(
    carbon_total: float, canopy_height: np.ndarray, inside: np.ndarray | None = None
) -> np.ndarray:
    """``CD_i = C x W_i``: a polygon's carbon (Mg C) on its pixels by canopy-height weights.

    The result sums to ``carbon_total`` over the polygon. Divide by a pixel's area in hectares
    for a density in Mg C/ha.
    """
    return float(carbon_total) * height_weights(canopy_height, inside)


def binarize_mask(mask: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """A forest mask as uint8 0/255 (the paper's convention): 255 where ``mask > threshold``.

    NaN counts as non-forest.
    """
    values = np.asarray(mask, dtype=np.float64)
    return np.where(np.nan_to_num(values, nan=threshold) > threshold, 255, 0).astype(np.uint8)
