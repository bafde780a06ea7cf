"""Copy an image folder (class sub-folders kept) with every image resized to a fixed size.

Uses terradiff's own dataset resize (:func:`terradiff.data.transforms.resize`: bilinear with
antialiasing when shrinking), so a model trained on the copy with ``crop: resize`` at the same size
sees what it would see from the originals, up to rounding to 8 bits and the JPEG re-encoding (the
copy is JPEG at ``--quality``). Made for moving data to a machine with a transfer limit: all 4500
AID scenes at 64x64 take 13 MB instead of 73 MB.

    python scripts/shrink_images.py ../shared/data/aid data/aid64 --size 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from terradiff.data.transforms import resize
from terradiff.progress import progress_bar


def shrink_folder(src: Path, dst: Path, size: int, quality: int = 95) -> int:
    """Resize every ``.jpg``/``.jpeg``/``.png`` under ``src`` to ``size`` x ``size`` into ``dst``
    (same relative paths); returns how many images were written."""
    paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"no JPEG/PNG images under {src}")
    for path in progress_bar(paths, desc="resizing", unit="img"):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        chw = torch.from_numpy(pixels).permute(2, 0, 1)
        small = resize(chw, (size, size)).clamp(0, 255).round().to(torch.uint8)
        out = (dst / path.relative_to(src)).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(small.permute(1, 2, 0).numpy()).save(out, quality=quality)
    return len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the copies")
    args = parser.parse_args()
    n = shrink_folder(args.src, args.dst, args.size, args.quality)
    print(f"wrote {n} images of {args.size}x{args.size} to {args.dst}")


if __name__ == "__main__":
    main()
