"""Peak resident memory of whole-raster inference against the raster's width and height.

Each run is a child process (``python -m terradiff.cli super-resolve|estimate ...``); its peak
resident set size is the ``ru_maxrss`` that ``os.wait4`` returns for that child alone. Inputs are
synthetic sizes made of real pixels, mirrored (reflected) to the size asked for and written as
tiled (256 x 256), deflate-compressed GeoTIFFs:

* super-resolution: the bundled real NAIP tile (``data/samples/naip``, 4 bands uint8, its R, G, B
  bands fed to the model), x4 with ``--tile 128 --overlap 16`` (512 x 512 output tiles);
* carbon maps (scale 1): bands B2, B3, B4, B8 of the bundled real BioMassters composite
  ``data/samples/biomassters/000aa810/image.tif`` (float32 reflectance), ``--tile 128
  --overlap 16``; optionally one 10,000 x 10,000 4-band input (``--huge``).

Models: small ones trained for a few steps (their predictions are meaningless, only their cost
matters): ``configs/sr/sample_regression_x4.yaml`` (UNet, 1.63 M parameters) and a 4-band carbon
regression UNet (0.18 M parameters), both for 5 steps into ``--workdir`` unless given
(``--sr-model``, ``--carbon-model``). ``--before DIR`` also runs every case with the ``terradiff``
package of ``DIR`` (e.g. ``git archive HEAD terradiff | tar -x -C DIR``), side by side;
``--default-malloc`` also runs the current code with ``TERRADIFF_DEFAULT_MALLOC=1``.

Run:  ``.venv/bin/python benchmarks/bench_memory.py --before /tmp/before --huge
--json benchmarks/results/memory.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.provenance import provenance_record  # noqa: E402

NAIP = ROOT / "data/samples/naip/m_4709963_se_14_1_20190904.tif"
BIOMASSTERS = ROOT / "data/samples/biomassters/000aa810/image.tif"
CARBON_CONFIG = """\
name: bench-memory-carbon-regression
task: carbon
seed: 0
data:
  kind: paired
  root: {root}
  image_size: 32
  crops_per_image: 8
  scaling: none
  bands: [1, 2, 3, 7]
  rgb_bands: [2, 1, 0]
carbon:
  method: regression
  max_density: 150.0
  train_chips: ["0060c0a5"]
  val_chips: ["288afc34"]
  test_chips: ["000aa810"]
model:
  base_channels: 16
  channel_mults: [1, 2]
  num_res_blocks: 1
  attention_resolutions: []
  num_groups: 8
  head_channels: 16
train:
  batch_size: 8
  max_steps: 5
  lr: 5.0e-4
  warmup_steps: 1
  save_every: 5
  sample_every: 5
"""


def mirrored(n: int, length: int) -> np.ndarray:
    """Indices ``0..n-1`` folded into ``0..length-1`` by reflection (0, 1, .., L-1, L-1, .., 0)."""
    i = np.arange(n) % (2 * length)
    return np.where(i < length, i, 2 * length - 1 - i)


def make_input(source: Path, bands: list[int], width: int, height: int, out: Path) -> Path:
    """A ``width x height`` tiled, compressed GeoTIFF of ``source``'s ``bands``, mirrored."""
    if out.exists():
        return out
    with rasterio.open(source) as src:
        data = src.read(bands)
        names = [src.descriptions[b - 1] for b in bands]
        profile = {
            "driver": "GTiff", "count": len(bands), "width": width, "height": height,
            "dtype": data.dtype.name, "nodata": src.nodata, "tiled": True, "blockxsize": 256,
            "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER",
            "crs": src.crs or CRS.from_epsg(3067),
            "transform": src.transform if src.crs else from_origin(300_000, 7_000_000, 10, 10),
        }  # fmt: skip
    if np.issubdtype(data.dtype, np.floating):
        profile["predictor"] = 3
    rows, cols = mirrored(height, data.shape[1]), mirrored(width, data.shape[2])
    tmp = out.with_name(f".{out.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        for first in range(0, height, 1024):
            part = rows[first : first + 1024]
            dst.write(data[:, part][:, :, cols], window=Window(0, first, width, len(part)))
        for band, name in enumerate(names, 1):
            if name:
                dst.set_band_description(band, name)
    os.replace(tmp, out)
    return out


def train(config: str, out: Path, code: Path | None, *extra: str) -> Path:
    """A model trained for a few steps (``terradiff train``) into ``out``, by the package under
    ``code`` (the ``--before`` one when given, so that both versions read its checkpoint)."""
    if not (out / "checkpoints").exists():
        command = [sys.executable, "-m", "terradiff.cli", "train", config, "--output-dir",
                   str(out), "--overwrite", *extra]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(code or ROOT))
        subprocess.run(command, check=True, capture_output=True, text=True, cwd=out.parent, env=env)
    return out


def run_case(
    verb: str, model: Path, image: Path, out: Path, code: Path | None, env: dict[str, str]
) -> dict[str, Any]:
    """One ``super-resolve``/``estimate`` run: peak RSS (MiB), wall seconds, tiles."""
    summary = out.with_suffix(".json")
    common = ["--tile", "128", "--overlap", "16", "--overwrite", "--summary", str(summary)]
    if verb == "super-resolve":
        command = [sys.executable, "-m", "terradiff.cli", "super-resolve", str(image), str(out),
                   "--model", str(model), "--bands", "1,2,3", *common]  # fmt: skip
    else:
        command = [sys.executable, "-m", "terradiff.cli", "estimate", "--model", str(model),
                   "--image", str(image), "--out", str(out), *common]  # fmt: skip
    peak_kib, seconds = measure(command, code, env)
    record = json.loads(summary.read_text())
    if verb == "estimate":
        record = next(iter(record.values()))
    result = {"peak_rss_mib": round(peak_kib / 1024), "seconds": round(seconds, 1)}
    result["tiles"] = record["tiles"]
    if "peak_buffer_bytes" in record:
        result["tiler_buffers_mib"] = round(record["peak_buffer_bytes"] / 2**20, 1)
    out.unlink(missing_ok=True)
    return result


def measure(command: list[str], code: Path | None, env_extra: dict[str, str]) -> tuple[int, float]:
    """``(peak RSS in KiB, wall seconds)`` of ``command`` run as a child process."""
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = str(code) if code is not None else str(ROOT)
    start = time.perf_counter()
    process = subprocess.Popen(  # not from the repository: `python -m` puts the cwd first
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=tempfile.gettempdir(),
    )  # fmt: skip
    assert process.stderr is not None
    err = process.stderr.read()  # the child's stderr (progress bars off) until it exits
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{err[-3000:]}")
    return usage.ru_maxrss, seconds


def environment() -> dict[str, Any]:
    """The machine and software the figures come from."""
    import torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
        "python": platform.python_version(), "torch": torch.__version__,
        "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="inputs and models (default: a temp dir)")
    parser.add_argument("--sr-model", type=Path, help="x4 SR model (default: trained, 5 steps)")
    parser.add_argument("--carbon-model", type=Path, help="4-band carbon model (default: trained)")
    parser.add_argument("--before", type=Path, help="also run the terradiff package under DIR")
    parser.add_argument("--default-malloc", action="store_true",
                        help="also run with TERRADIFF_DEFAULT_MALLOC=1")  # fmt: skip
    parser.add_argument("--huge", action="store_true", help="one 10,000 x 10,000 carbon run")
    parser.add_argument(
        "--fixed", type=int, nargs=2, default=(240, 1024), metavar=("SR", "C"),
        help="the other side of the width/height series: SR, carbon (px)",
    )  # fmt: skip
    parser.add_argument("--sizes", type=int, nargs="+", default=(2048, 8192))
    parser.add_argument("--skip", nargs="*", default=(), choices=("sr", "carbon"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        code = args.before.resolve() if args.before is not None else None
        sr_model = args.sr_model or train(
            str(ROOT / "configs/sr/sample_regression_x4.yaml"),
            work / "sr",
            code,
            "--set",
            "train.max_steps=5",
            "--set",
            f"data.root={ROOT / 'data/samples/aid'}",
        )
        if args.carbon_model is None:
            config = work / "carbon.yaml"
            config.write_text(CARBON_CONFIG.format(root=ROOT / "data/samples/biomassters"))
            carbon_model = train(str(config), work / "carbon", code)
        else:
            carbon_model = args.carbon_model
        variants: list[tuple[str, Path | None, dict[str, str]]] = []
        if args.before is not None:
            variants.append(("before", args.before.resolve(), {}))
        variants.append(("after", None, {}))
        if args.default_malloc:
            variants.append(("after, default malloc", None, {"TERRADIFF_DEFAULT_MALLOC": "1"}))
        cases = []
        for verb, fixed, source, bands in (
            ("super-resolve", args.fixed[0], NAIP, [1, 2, 3, 4]),
            ("estimate", args.fixed[1], BIOMASSTERS, [1, 2, 3, 7]),
        ):
            if ("sr" if verb == "super-resolve" else "carbon") in args.skip:
                continue
            for size in args.sizes:
                cases.append((verb, size, fixed, source, bands))  # width series
            for size in args.sizes:
                cases.append((verb, fixed, size, source, bands))  # height series
        if args.huge:
            cases.append(("estimate", 10_000, 10_000, BIOMASSTERS, [1, 2, 3, 7]))
        rows = []
        env_info = environment()
        provenance = provenance_record()
        print(json.dumps(env_info), flush=True)
        for verb, width, height, source, bands in cases:
            kind = "naip" if source == NAIP else "bio"
            image = make_input(source, bands, width, height, work / f"{kind}_{width}x{height}.tif")
            model = sr_model if verb == "super-resolve" else carbon_model
            row: dict[str, Any] = {"verb": verb, "width": width, "height": height}
            for name, code, env in variants:
                if (width, height) == (10_000, 10_000) and name.startswith("after, default"):
                    continue  # the allocator comparison is made on the series, not the 10k run
                row[name] = run_case(verb, model, image, work / "out.tif", code, env)
                print(json.dumps(row), flush=True)
            rows.append(row)
            if args.json:  # after every case: a run stopped half-way keeps what it measured
                result = {
                    "environment": env_info,
                    "command": " ".join(sys.argv),
                    "rows": rows,
                    "provenance": provenance,
                }
                atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
            if (width, height) == (10_000, 10_000):
                image.unlink()
    names = [name for name, _, _ in variants]
    header = "| run | W x H (input px) | tiles | " + " | ".join(
        f"peak RSS {n}, MiB | s {n}" for n in names
    )
    print("\n" + header + " |")
    print("|" + "---|" * (3 + 2 * len(names)))
    for row in rows:
        cells = [row["verb"], f"{row['width']:,} x {row['height']:,}"]
        first = next(row[n] for n in names if n in row)
        cells.append(f"{first['tiles']:,}")
        for n in names:
            cells += [f"{row[n]['peak_rss_mib']:,}", f"{row[n]['seconds']:g}"] if n in row else [
                "-", "-"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
