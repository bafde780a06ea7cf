"""CPU cost of one training item of a folder dataset, per crop mode (the DataLoader path).

``crop: resize`` (the schedule study's and the demo's setting) resamples the whole scene into
every item; the resize draws no random number, so a caching dataset keeps each file's result
and an item is then its flips alone (:meth:`terradiff.data.datasets.ImageFolderDataset.resized`).
Side by side in one run, one thread, on the bundled AID sample (300 JPEGs of 150x150):

* ``resize, uncached``: the dataset with ``cache: false`` (each item decodes and resizes);
* ``resize, decoded cache``: the decoded file cached, the resize done per item (the code
  before 2026-12-01, emulated by clearing the resize cache before every item);
* ``resize, resize cache``: what ``cache: true`` does now (after one pass filled it);
* ``random crop``: a random crop of the cached decoded file, for scale.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_dataset_items.py --sizes 32,64
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terradiff.data.datasets import ImageFolderDataset

REPO = Path(__file__).resolve().parents[1]


def per_item_ms(get: Callable[[int], object], count: int, repeats: int) -> list[float]:
    """Milliseconds per item of ``get`` over items ``0..count-1``, once per repeat."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(count):
            get(index)
        times.append(1000.0 * (time.perf_counter() - start) / count)
    return times


def measure(data: Path, size: int, repeats: int) -> None:
    """Print the four rows for items of ``size`` pixels."""
    common = {"image_size": size, "random_flip": True}
    uncached = ImageFolderDataset(data, crop="resize", cache=False, **common)
    cached = ImageFolderDataset(data, crop="resize", cache=True, **common)
    crops = ImageFolderDataset(data, crop="random", cache=True, **common)
    count = len(cached)

    def decoded_only(index: int) -> object:
        cached._resized.clear()  # the resize per item, as before the resize cache
        return cached.get(index, 1)

    rows = {"resize, uncached": per_item_ms(lambda i: uncached.get(i, 1), count, 1)}
    rows["resize, decoded cache"] = per_item_ms(decoded_only, count, repeats)
    per_item_ms(lambda i: cached.get(i, 0), count, 1)  # fills the resize cache
    rows["resize, resize cache"] = per_item_ms(lambda i: cached.get(i, 1), count, repeats)
    rows["random crop"] = per_item_ms(lambda i: crops.get(i, 1), count, repeats)
    base = statistics.median(rows["resize, decoded cache"])
    print(f"\n{count} items of {size}x{size} from {data}")
    for name, times in rows.items():
        med = statistics.median(times)
        print(
            f"  {name:<24} {med:7.3f} ms/item (runs {', '.join(f'{t:.3f}' for t in times)})"
            f"  decoded-cache / this {base / med:6.1f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "aid")
    parser.add_argument("--sizes", default="32,64", help="comma list of image sizes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"python {platform.python_version()}, torch {torch.__version__}, 1 thread")
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    for size in [int(s) for s in args.sizes.split(",") if s]:
        measure(args.data, size, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
