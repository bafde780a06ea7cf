"""Tiled inference on a Dask cluster: blocks of tile rows on workers, one GeoTIFF by the client.

:func:`predict_raster_dask` splits the tile grid of :func:`terradiff.data.tiling.predict_raster`
into blocks of consecutive tile rows. Each block is a Dask task: a worker opens the input, builds
the model once per process (``predict_factory``, cached), predicts the tiles that overlap the
block's own rows -- the same tiles, blending weights, batches and summation order as a
single-process run -- and returns the finished rows. The client writes the rows into a temporary
GeoTIFF as blocks complete (in any order) and moves it onto the output name at the end, so the
result equals the single-process raster and an interrupted run leaves nothing under the final
name. Memory per worker is one block; the client holds at most the blocks in flight.

A local cluster (``n_workers`` processes, one Dask thread each, the cores shared out as torch
threads) is started when no ``client`` or ``scheduler`` address is given;
``scheduler="tcp://host:8786"`` uses an existing cluster whose workers can read the input path and
import terradiff.
"""

from __future__ import annotations

import os
import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from terradiff.data.raster import open_raster
from terradiff.data.tiling import PredictFn, TiledRun, TilingOptions, TilingSummary
from terradiff.data.tiling.memory import gdal_cache
from terradiff.data.tiling.writer import GeoTiffWriter, check_output_path
from terradiff.errors import DataError, DataWarning
from terradiff.progress import progress_bar

__all__ = ["predict_raster_dask"]

_PREDICTORS: dict[bytes, PredictFn] = {}
"""Per worker process: the predictor built by each factory (models load once, not per block)."""


class _MemorySink:
    """The row sink of a block: keeps the pixels the block hands on, for the client to write.

    A run hands on windows of rows and column blocks; the windows of one chunk of rows tile the
    raster's width, left to right, so :meth:`stack` puts them side by side and then the chunks
    on top of each other.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, np.ndarray]] = []
        self.masks: list[tuple[int, int, np.ndarray]] = []

    def write_rows(
        self, array: np.ndarray, mask: np.ndarray | None, row: int, col: int = 0
    ) -> None:
        self.rows.append((row, col, array))
        if mask is not None:
            self.masks.append((row, col, mask))

    @staticmethod
    def stack(parts: list[tuple[int, int, np.ndarray]], axis: int) -> np.ndarray | None:
        """The parts (``axis`` is the rows axis: 1 for ``[C, rows, cols]``, 0 for masks)."""
        if not parts:
            return None
        chunks: dict[int, list[tuple[int, np.ndarray]]] = {}
        for row, col, array in parts:
            chunks.setdefault(row, []).append((col, array))
        rows = [
            np.concatenate([a for _, a in sorted(chunks[row], key=lambda p: p[0])], axis=axis + 1)
            for row in sorted(chunks)
        ]
        return np.concatenate(rows, axis=axis)


def _predictor(factory: Callable[[], PredictFn]) -> PredictFn:
    key = pickle.dumps(factory)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = factory()
    return _PREDICTORS[key]


def _predict_block(
    in_path: Path,
    out_path: Path,
    options: TilingOptions,
    own: tuple[int, int],
    factory: Callable[[], PredictFn],
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Worker side: the finished output rows of input rows ``own``."""
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)  # one worker per core share, no oversubscription
    predict_fn = _predictor(factory)
    with open_raster(in_path) as src, gdal_cache(src, options), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the client already warned
        run = TiledRun.from_source(src, in_path, out_path, options)
        sink = _MemorySink()
        run.run(src, predict_fn, sink, progress=False, own=own)
    return {
        "row": own[0] * options.scale,
        "array": _MemorySink.stack(sink.rows, axis=1),
        "mask": _MemorySink.stack(sink.masks, axis=0),
        "nonfinite": run.nonfinite,
        "batches": run.batches,
        "bands": run.out_bands,
        "peak_bytes": run.peak_bytes,
    }


def _tiling_options(given: dict[str, Any]) -> TilingOptions:
    """The :class:`TilingOptions` of ``given`` (unknown keys and a missing scaling refused)."""
    known = {f.name for f in fields(TilingOptions) if f.init}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"predict_raster_dask got unknown options {unknown}")
    if "scaling" not in given:
        raise TypeError("predict_raster_dask needs scaling=")
    return TilingOptions(**given)


def predict_raster_dask(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    predict_factory: Callable[[], PredictFn],
    *,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    rows_per_task: int | None = None,
    progress: bool = True,
    **options: Any,
) -> TilingSummary:
    """:func:`~terradiff.data.tiling.predict_raster` with the tiles computed on Dask workers.

    Args:
        in_path, out_path: as :func:`predict_raster`.
        predict_factory: a picklable callable with no arguments that returns the ``predict_fn``
            (e.g. ``functools.partial(load_my_model, checkpoint)``); called once per worker.
        client: a ``distributed.Client`` to use.
        scheduler: address of an existing Dask scheduler (when no ``client``).
        n_workers: worker processes of the local cluster started otherwise.
        rows_per_task: tile rows per task (default: about two tasks per worker, 4 to 32 rows;
            each task also predicts the tile row above its first, so fewer, larger blocks repeat
            less work, and more blocks spread better over many workers).
        progress: show progress over blocks (:func:`terradiff.progress.progress_bar`).
        **options: the fields of :class:`~terradiff.data.tiling.TilingOptions` (every keyword
            option of :func:`predict_raster` but ``progress``: ``scaling``, ``tile``, ...),
            checked on the client before any task starts.

    Returns:
        A :class:`TilingSummary` (``peak_buffer_bytes`` is the largest of one worker's blocks).
    """
    from distributed import Client, LocalCluster, as_completed

    started = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    tiling = _tiling_options(options)
    check_output_path(out_path, tiling.overwrite)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    own_client = own_cluster = None
    writer: GeoTiffWriter | None = None
    futures: list[Any] = []
    try:
        with open_raster(in_path) as src, gdal_cache(src, tiling):
            run = TiledRun.from_source(src, in_path, out_path, tiling)
        writer = GeoTiffWriter(run.output)
        grid = run.grid
        starts = grid.row_starts
        if rows_per_task is None:
            # a block also predicts the tile row above its own rows (the overlap), so small
            # blocks repeat work: 4-32 tile rows per block, about two blocks per worker
            rows_per_task = min(32, max(4, len(starts) // (2 * max(1, n_workers))))
        if rows_per_task < 1:
            raise DataError(f"rows_per_task must be >= 1, got {rows_per_task}")
        if client is None and scheduler is None and n_workers < 1:  # 0 would wait forever
            raise DataError(f"n_workers (--workers) must be >= 1, got {n_workers}")
        blocks = []
        for first in range(0, len(starts), rows_per_task):
            nxt = first + rows_per_task
            blocks.append(
                (
                    0 if first == 0 else starts[first],
                    starts[nxt] if nxt < len(starts) else grid.height,
                )
            )
        if client is None:
            if scheduler is not None:
                client = own_client = Client(scheduler)
            else:
                own_cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                client = own_client = Client(own_cluster)
        threads = None
        if own_cluster is not None:  # our local cluster: split the cores between the workers
            threads = max(1, (os.cpu_count() or 1) // max(1, n_workers))
        futures = [
            client.submit(
                _predict_block,
                in_path,
                out_path,
                tiling,
                own,
                predict_factory,
                threads,
                pure=False,
            )
            for own in blocks
        ]
        peak = 0
        batches = 0
        with progress_bar(
            total=len(blocks), desc=in_path.name, unit="block", disable=not progress
        ) as bar:
            for future in as_completed(futures):
                part = future.result()
                batches += part["batches"]
                run.nonfinite += part["nonfinite"]
                peak = max(peak, part["peak_bytes"])
                if part["array"] is not None:
                    if writer.dst is None:
                        run.out_bands = part["bands"]
                    writer.write_rows(part["array"], part["mask"], part["row"])
                bar.update(1)
        writer.commit()
    finally:
        # the temporary output first (a quick local delete), then the slower cluster calls, each
        # in its own try so that a failure (or a second Ctrl-C) in one still runs the next
        if writer is not None:
            writer.discard()
        try:
            for future in futures:
                if not future.done():
                    future.cancel()
        finally:
            try:
                if own_client is not None:
                    own_client.close()
            finally:
                if own_cluster is not None:
                    own_cluster.close()
    run.batches = batches
    return run.summary(time.perf_counter() - started, peak_bytes=peak)
