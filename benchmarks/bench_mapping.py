"""Carbon-mapping throughput: ``terradiff estimate`` in one process vs on a local Dask cluster.

Input: a mosaic of the bundled real BioMassters composites (``data/samples/biomassters/*/
image.tif``: chips 0060c0a5, 288afc34, 000aa810, 0060c0a5 again in a 2x2 block of 512x512, the
block repeated ``--repeat`` times along each side; 10 bands, no CRS). Model: a carbon checkpoint
(default: the one ``make carbon-example`` trains). Each run is a child process (``python -m
terradiff.cli estimate ... --summary``): wall time, tiles per second of the tiling, and the peak
resident memory of the single-process run (``ru_maxrss`` of the child). The Dask run's raster is
compared with the single-process one: the same tiles and noise, so they agree up to
floating-point rounding (torch's kernels may sum in another order with another thread count); the
largest difference is printed.

With two or more sizes, the *marginal* rate of each engine is printed too: the extra tiles of the
larger mosaic over the extra seconds they took. The fixed costs (starting processes and the
cluster, importing torch, loading the model in each worker) cancel in it, so it is the rate a
large raster converges to.

Run:  ``make carbon-example && .venv/bin/python benchmarks/bench_mapping.py --repeat 1 3``
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


def mosaic(samples: Path, out: Path, repeat: int = 1) -> Path:
    """The 2x2 mosaic of the bundled composites, repeated ``repeat`` times along each side, as
    one 10-band GeoTIFF of ``512 * repeat`` pixels a side."""
    tiles = [read_raster(samples / chip / "image.tif") for chip in CHIPS]
    arrays = [t.array for t in tiles]
    top = np.concatenate(arrays[:2], axis=2)
    bottom = np.concatenate(arrays[2:], axis=2)
    block = np.concatenate([top, bottom], axis=1)
    write_raster(out, np.tile(block, (1, repeat, repeat)), band_names=tiles[0].band_names)
    return out


def marginal_rates(runs: list[dict]) -> dict[str, float]:
    """Per engine, (tiles of the largest - of the smallest mosaic) / (their seconds' difference):
    the rate without the fixed costs that both sizes pay."""
    small, large = runs[0], runs[-1]
    rates = {}
    for engine in ("local", "dask"):
        tiles = large[engine]["tiles"] - small[engine]["tiles"]
        seconds = large[engine]["seconds_process"] - small[engine]["seconds_process"]
        rates[engine] = round(tiles / seconds, 2) if tiles > 0 and seconds > 0 else float("nan")
    return rates


def run(command: list[str]) -> float:
    """Wall seconds of a child process (raises on failure)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def measure(args: argparse.Namespace, tmp: Path, repeat: int) -> dict:
    """One mosaic size: both engines, their rates and how far apart their rasters are."""
    scene = mosaic(args.samples, tmp / f"mosaic{repeat}.tif", repeat)
    base = [sys.executable, "-m", "terradiff.cli", "estimate", "--model", args.model,
            "--image", str(scene), "--steps", str(args.steps), "--tile", str(args.tile),
            "--overlap", str(args.overlap)]  # fmt: skip
    result: dict = {"size": [512 * repeat, 512 * repeat]}
    for name, extra in (("local", []), ("dask", ["--dask", "--workers", str(args.workers)])):
        out, summary = tmp / f"{name}{repeat}.tif", tmp / f"{name}{repeat}.json"
        seconds = run([*base, "--out", str(out), "--summary", str(summary), *extra])
        record = next(iter(json.loads(summary.read_text()).values()))
        result[name] = {
            "seconds_process": round(seconds, 2),
            "seconds_tiling": round(record["seconds"], 2),
            "tiles": record["tiles"],
            "tiles_per_second": round(record["tiles"] / record["seconds"], 2),
        }
        if name == "local":  # the largest child so far: the sizes run smallest first
            result[name]["peak_rss_mib"] = round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            )
        print(f"{512 * repeat} px, {name}: {result[name]}", flush=True)
    with (
        rasterio.open(tmp / f"local{repeat}.tif") as a,
        rasterio.open(tmp / f"dask{repeat}.tif") as b,
    ):
        local, dask = a.read().astype(np.float64), b.read().astype(np.float64)
        result["dask_equals_local"] = bool(np.array_equal(local, dask, equal_nan=True))
        result["max_abs_difference_MgC_per_ha"] = float(np.nanmax(np.abs(local - dask)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="outputs/carbon-example/run")
    parser.add_argument("--samples", type=Path, default=Path("data/samples/biomassters"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--repeat",
        type=int,
        nargs="+",
        default=[1],
        help="mosaic sizes, 512 px times each (1 3: 512 and 1536 px, and the marginal rates)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not Path(args.model).exists():
        sys.exit(f"no model at {args.model}: run `make carbon-example` first, or pass --model")
    if min(args.repeat) < 1:
        sys.exit("--repeat takes sizes >= 1")
    results: dict = {"model": args.model, "steps": args.steps, "tile": args.tile}
    results["provenance"] = provenance_record()
    with tempfile.TemporaryDirectory() as tmp:
        results["runs"] = [measure(args, Path(tmp), r) for r in sorted(set(args.repeat))]
    if len(results["runs"]) > 1:
        results["marginal_tiles_per_second"] = marginal_rates(results["runs"])
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
