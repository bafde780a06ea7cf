"""Carbon-mapping throughput: ``terradiff estimate`` in one process vs on a local Dask cluster.

Input: a 512x512, 10-band mosaic of the bundled real BioMassters composites
(``data/samples/biomassters/*/image.tif``: chips 0060c0a5, 288afc34, 000aa810, 0060c0a5 again, in a
2x2 layout; no CRS). Model: a carbon checkpoint (default: the one ``make carbon-example`` trains).
Each run is a child process (``python -m terradiff.cli estimate ... --summary``): wall time, tiles
per second of the tiling, and the peak resident memory of the single-process run (``ru_maxrss`` of
the child). The Dask run's raster is compared with the single-process one: the same tiles and noise,
so they agree up to floating-point rounding (torch's kernels may sum in another order with another
thread count); the largest difference is printed.

Run:  ``make carbon-example && .venv/bin/python benchmarks/bench_mapping.py``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terradiff.data.raster import read_raster, write_raster
from terradiff.provenance import provenance_record

CHIPS = ("0060c0a5", "288afc34", "000aa810", "0060c0a5")


def mosaic(samples: Path, out: Path) -> Path:
    """The 2x2 mosaic of the bundled composites as one 10-band GeoTIFF."""
    tiles = [read_raster(samples / chip / "image.tif") for chip in CHIPS]
    arrays = [t.array for t in tiles]
    top = np.concatenate(arrays[:2], axis=2)
    bottom = np.concatenate(arrays[2:], axis=2)
    write_raster(out, np.concatenate([top, bottom], axis=1), band_names=tiles[0].band_names)
    return out


def run(command: list[str]) -> float:
    """Wall seconds of a child process (raises on failure)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="outputs/carbon-example/run")
    parser.add_argument("--samples", type=Path, default=Path("data/samples/biomassters"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not Path(args.model).exists():
        sys.exit(f"no model at {args.model}: run `make carbon-example` first, or pass --model")
    results: dict = {"model": args.model, "steps": args.steps, "tile": args.tile}
    results["provenance"] = provenance_record()
    with tempfile.TemporaryDirectory() as tmp:
        scene = mosaic(args.samples, Path(tmp) / "mosaic.tif")
        base = [sys.executable, "-m", "terradiff.cli", "estimate", "--model", args.model,
                "--image", str(scene), "--steps", str(args.steps), "--tile", str(args.tile),
                "--overlap", str(args.overlap)]  # fmt: skip
        for name, extra in (("local", []), ("dask", ["--dask", "--workers", str(args.workers)])):
            out, summary = Path(tmp) / f"{name}.tif", Path(tmp) / f"{name}.json"
            seconds = run([*base, "--out", str(out), "--summary", str(summary), *extra])
            record = next(iter(json.loads(summary.read_text()).values()))
            results[name] = {
                "seconds_process": round(seconds, 2),
                "seconds_tiling": round(record["seconds"], 2),
                "tiles": record["tiles"],
                "tiles_per_second": round(record["tiles"] / record["seconds"], 2),
            }
            if name == "local":
                results[name]["peak_rss_mib"] = round(
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
                )
        with (
            rasterio.open(Path(tmp) / "local.tif") as a,
            rasterio.open(Path(tmp) / "dask.tif") as b,
        ):
            local, dask = a.read().astype(np.float64), b.read().astype(np.float64)
            results["dask_equals_local"] = bool(np.array_equal(local, dask, equal_nan=True))
            results["max_abs_difference_MgC_per_ha"] = float(np.nanmax(np.abs(local - dask)))
    results["size"] = [512, 512]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
