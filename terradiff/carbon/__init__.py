"""Forest carbon: the IIDM paper's pre-processing (inventory -> carbon density) and data."""

from terradiff.carbon.stock import (
    CarbonFactors,
    binarize_mask,
    carbon_from_biomass,
    carbon_from_volume,
    distribute_carbon,
    height_weights,
    volume_from_per_hectare,
)

__all__ = [
    "CarbonFactors",
    "binarize_mask",
    "carbon_from_biomass",
    "carbon_from_volume",
    "distribute_carbon",
    "height_weights",
    "volume_from_per_hectare",
]
