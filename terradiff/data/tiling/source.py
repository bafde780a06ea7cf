"""The input side of a tiled run: which bands of the file are used, their nodata, window reads.

:meth:`InputSpec.from_dataset` resolves the selected bands and their nodata values once;
:meth:`InputSpec.read_window` reads one window (a tile row of one column block) with a single
windowed read, never the whole raster, invalid pixels flagged as
:func:`terradiff.data.raster.read_raster` flags them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from terradiff.data.raster import file_band_names, read_block, resolve_bands
from terradiff.data.tiling.options import TilingOptions
from terradiff.data.tiling.value_check import check_input_values, sample_bands
from terradiff.errors import DataError


@dataclass
class InputSpec:
    """What a run needs to know about the input file.

    Attributes:
        path: the input file.
        indices: the selected bands, 1-based.
        names: names of all the file's bands.
        nodata: nodata value of each selected band (None for none).
        force_nodata: the nodata values were given by the caller (not read from the file).
        dtype: the file's data type.
        height: rows.
        width: columns.
        crs: the file's CRS (None for none).
        transform: the file's affine transform.
        maybe_invalid: whether any pixel can be invalid (nodata, float NaN or a mask band).
    """

    path: Path
    indices: list[int]
    names: list[str]
    nodata: list[float | None]
    force_nodata: bool
    dtype: np.dtype
    height: int
    width: int
    crs: Any
    transform: Any
    maybe_invalid: bool

    @classmethod
    def from_dataset(cls, src: Any, path: Path, options: TilingOptions) -> InputSpec:
        """The input ``path``, open as ``src``, with the bands and nodata of ``options``.

        Raises:
            RasterError: an unknown band.
            DataError: the options' scaling is defined for another number of bands, or the
                input's values do not fit it (:mod:`~terradiff.data.tiling.value_check`).
        """
        names = file_band_names(src, options.band_names)
        indices = resolve_bands(options.bands, names, path)
        in_scaling = options.input_scaling
        if in_scaling.num_bands not in (None, len(indices)):
            raise DataError(
                f"scaling {in_scaling.name!r} is defined for {in_scaling.num_bands} bands but "
                f"{len(indices)} bands of {path} are selected "
                f"({[names[i - 1] for i in indices]}); select the bands the model was "
                "trained on"
            )
        file_nodata: list[float | None] = [src.nodatavals[i - 1] for i in indices]
        if options.nodata is not None:
            file_nodata = [float(options.nodata)] * len(indices)
        in_nodata = next((v for v in file_nodata if v is not None), None)
        in_dtype = np.dtype(src.dtypes[indices[0] - 1])
        samples, sampled = sample_bands(
            src, indices, names, file_nodata, options.nodata is not None
        )
        check_input_values(path, samples, sampled, in_scaling, in_dtype)
        return cls(
            path=path,
            indices=indices,
            names=names,
            nodata=file_nodata,
            force_nodata=options.nodata is not None,
            dtype=in_dtype,
            height=int(src.height),
            width=int(src.width),
            crs=src.crs,
            transform=src.transform,
            maybe_invalid=(
                in_nodata is not None
                or np.issubdtype(in_dtype, np.floating)
                or any(MaskFlags.all_valid not in src.mask_flag_enums[i - 1] for i in indices)
            ),
        )

    @property
    def first_nodata(self) -> float | None:
        """The first selected band's nodata value that is set (None when none is)."""
        return next((v for v in self.nodata if v is not None), None)

    @property
    def selected_names(self) -> list[str]:
        """Names of the selected bands, in selection order."""
        return [self.names[i - 1] for i in self.indices]

    def read_window(
        self, src: Any, row: int, height: int, col: int = 0, width: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[row, row + height)`` and columns ``[col, col + width)`` (default: to the
        raster's right edge) of the selected bands, and their validity, in one windowed read.

        Returns:
            ``(data [C, height, width], valid [height, width])``.
        """
        width = self.width - col if width is None else width
        window = Window(col, row, width, height)
        return read_block(src, self.indices, window, self.nodata, self.force_nodata, self.path)


__all__ = ["InputSpec"]
