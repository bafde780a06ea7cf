"""Generated images to GeoTIFFs in the training data's physical units (e.g. DN, reflectance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from terradiff.data.band_info import BandInfo
from terradiff.data.raster import write_raster


def write_samples_geotiff(
    images: torch.Tensor,
    band_info: BandInfo,
    out_dir: str | Path,
    *,
    prefix: str = "sample",
    overwrite: bool = False,
) -> list[Path]:
    """Write each ``[C, H, W]`` image of ``images`` (model range [-1, 1]) as one GeoTIFF.

    Values are mapped back with the scaling the model was trained with (``band_info.scaling``),
    so a Sentinel-2 model writes DN / reflectance * 10,000 and an 8-bit model writes 0..255
    (as uint8). The band descriptions are the training bands' names. The files carry no
    georeference: generated images are not of a place.

    Returns:
        The paths written (``out_dir/{prefix}_0000.tif`` ...).
    """
    scaling = band_info.band_scaling()
    names = band_info.name_list
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    physical = scaling.from_model(images.detach().float().clamp(-1, 1).cpu().numpy())
    if scaling.name == "uint8":
        physical = np.clip(np.rint(physical), 0, 255).astype(np.uint8)
    else:
        physical = physical.astype(np.float32)
    paths = []
    for i, image in enumerate(physical):
        paths.append(
            write_raster(
                out_dir / f"{prefix}_{i:04d}.tif",
                image,
                band_names=list(names) if names and len(names) == image.shape[0] else None,
                overwrite=overwrite,
            )
        )
    return paths
