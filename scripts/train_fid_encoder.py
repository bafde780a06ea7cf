#!/usr/bin/env python
"""Train terradiff's offline FID/KID encoder ("aid-cnn") on the AID scene classes.

This is the command that produced ``terradiff/assets/aid_encoder.safetensors``,
``aid_encoder.json`` and ``aid_encoder_train.log``::

    nice -n 5 .venv/bin/python scripts/train_fid_encoder.py --data ../shared/data/aid \
        --epochs 60 --out terradiff/assets/aid_encoder.safetensors --seed 0

Data: AID (Xia et al., 2017, "AID: A Benchmark Data Set for Performance Evaluation of Aerial Scene
Classification"), 30 classes x 150 RGB JPEGs of 150x150 pixels in ``<data>/<class>/*.jpg``. A
stratified split holds out ``--test-fraction`` of every class (seeded); the held-out file names
are recorded in the JSON so tests and users can evaluate on images the encoder never saw.

Training: images are decoded once (PIL + numpy) and kept as uint8; every batch gets a random
resized crop (area 35-100 %, aspect 3/4-4/3) resized to 64x64 with an anti-aliased bilinear filter,
one of the 8 dihedral transforms (aerial scenes have no canonical orientation) and a mild
brightness/contrast jitter. AdamW + cosine schedule with linear warm-up, label smoothing 0.1,
bfloat16 autocast on CPU (fp32 master weights). Evaluation uses the exact inference path of
:class:`terradiff.metrics.encoders.AidCnnExtractor` (whole 150x150 image in [-1, 1] -> resize to 64
inside the extractor).

The data reading is self-contained (PIL + numpy + torch): it does not use terradiff.data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from terradiff.io import atomic_path, atomic_write_text  # noqa: E402
from terradiff.metrics.encoders import (  # noqa: E402
    ENCODER_FORMAT,
    AidCnn,
    AidCnnConfig,
    AidCnnExtractor,
    file_fingerprint,
)
from terradiff.progress import progress_bar  # noqa: E402

PROVENANCE = (
    "AID aerial scene dataset (Xia et al., 2017, IEEE TGRS 55(7)), 30 classes x 150 images, "
    "150x150 RGB JPEG downscaled from the original 600x600 Google Earth imagery; copy at "
    "../shared/data/aid via github zlima/testtensor (no licence stated; research use)"
)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "aid",
        help="folder with one sub-folder of images per class",
    )
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "terradiff/assets/aid_encoder.safetensors",
        help="weights file; the .json config and _train.log are written beside it",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=2.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 1, 2, 1])
    p.add_argument("--num-groups", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (slower on CPU)")
    p.add_argument("--eval-every", type=int, default=5, help="test accuracy every N epochs")
    p.add_argument("--max-per-class", type=int, default=None, help="debug: use fewer images")
    return p.parse_args(argv)


def list_images(root: Path, max_per_class: int | None) -> tuple[list[str], list[list[Path]]]:
    """Class names (sorted sub-folders) and their sorted image files."""
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} not found (expected <data>/<class>/*.jpg)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = []
    for c in classes:
        fs = sorted(f for f in (root / c).iterdir() if f.suffix.lower() in EXTENSIONS)
        if max_per_class:
            fs = fs[:max_per_class]
        if not fs:
            raise ValueError(f"class folder {root / c} holds no images")
        files.append(fs)
    if len(classes) < 2:
        raise ValueError(f"{root}: need at least 2 class sub-folders, found {classes}")
    return classes, files


def stratified_split(
    files: list[list[Path]], fraction: float, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Hold out ``fraction`` of every class (at least one image), seeded."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, fs in enumerate(files):
        order = rng.permutation(len(fs))
        n_test = max(1, round(fraction * len(fs)))
        test += [(fs[i], label) for i in sorted(order[:n_test])]
        train += [(fs[i], label) for i in sorted(order[n_test:])]
    return train, test


def load_uint8(items: list[tuple[Path, int]], desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode images to a uint8 tensor [N, 3, H, W] (all resized to the first image's size)."""
    arrays, labels, size = [], [], None
    for path, label in progress_bar(items, desc=desc, unit="img", leave=False):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is None:
                size = im.size
            if im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            arrays.append(np.asarray(im, dtype=np.uint8))
        labels.append(label)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.long)


def augment(x8: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop -> size x size, dihedral transform, brightness/contrast jitter.

    Args:
        x8: uint8 batch [B, 3, H, W].

    Returns:
        float batch in [0, 1], [B, 3, size, size].
    """
    b, _, h, w = x8.shape
    out = torch.empty(b, 3, size, size)
    u = torch.rand(b, 6, generator=gen)
    for i in range(b):
        area = (0.35 + 0.65 * u[i, 0].item()) * h * w
        aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[i, 1].item())
        ch = min(h, max(8, round(math.sqrt(area / aspect))))
        cw = min(w, max(8, round(math.sqrt(area * aspect))))
        top = int(u[i, 2].item() * (h - ch + 1))
        left = int(u[i, 3].item() * (w - cw + 1))
        crop = x8[i : i + 1, :, top : top + ch, left : left + cw].float() / 255.0
        out[i] = F.interpolate(
            crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )[0]
    k = torch.randint(0, 4, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    for i in range(b):
        img = torch.rot90(out[i], int(k[i]), dims=(1, 2))
        out[i] = img.flip(2) if flip[i] else img
    brightness = 1.0 + 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    contrast = 1.0 + 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean) * brightness
    return out.clamp(0.0, 1.0)


@torch.no_grad()
def evaluate(extractor: AidCnnExtractor, x8: torch.Tensor, y: torch.Tensor, bs: int = 150) -> dict:
    """Accuracy (and per-class accuracy) through the extractor's inference path."""
    preds = []
    for i in range(0, len(x8), bs):
        images = x8[i : i + bs].float() / 127.5 - 1.0
        preds.append(extractor.logits(images).argmax(1))
    pred = torch.cat(preds)
    correct = pred == y
    n_classes = int(y.max()) + 1
    per_class = [correct[y == c].float().mean().item() for c in range(n_classes)]
    return {"accuracy": correct.float().mean().item(), "per_class": per_class}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    out = args.out
    if out.suffix != ".safetensors":
        raise SystemExit(f"--out must end with .safetensors, got {out}")
    config_path = out.with_suffix(".json")
    log_path = out.with_name(out.stem + "_train.log")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [*sys.argv])
    log_lines: list[str] = []

    def log(msg: str) -> None:
        tqdm.write(msg)
        log_lines.append(msg)
        atomic_write_text(log_path, "\n".join(log_lines) + "\n")

    t_start = time.perf_counter()
    started = dt.datetime.now(dt.UTC)
    log(f"# {started.isoformat(timespec='seconds')} {command}")
    log(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, bf16={not args.no_bf16}"
    )

    classes, files = list_images(args.data, args.max_per_class)
    train_items, test_items = stratified_split(files, args.test_fraction, args.seed)
    x_train, y_train = load_uint8(train_items, "decode train")
    x_test, y_test = load_uint8(test_items, "decode test")
    log(
        f"# data {args.data}: {len(classes)} classes, {len(train_items)} train / "
        f"{len(test_items)} test images of {tuple(x_train.shape[-2:])} px "
        f"(decoded in {time.perf_counter() - t_start:.1f} s)"
    )

    x01 = x_train.float() / 255.0
    mean = x01.mean(dim=(0, 2, 3)).tolist()
    std = x01.std(dim=(0, 2, 3)).tolist()
    del x01

    arch = AidCnnConfig(
        widths=tuple(args.widths),
        blocks=tuple(args.blocks),
        num_groups=args.num_groups,
        num_classes=len(classes),
    )
    net = AidCnn(arch)
    n_params = sum(p.numel() for p in net.parameters())
    log(f"# aid-cnn {arch.to_dict()}: {n_params:,} parameters; mean {mean} std {std}")
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)

    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total = args.epochs * steps_per_epoch
    warmup = max(1, round(args.warmup_epochs * steps_per_epoch))

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def make_extractor() -> AidCnnExtractor:
        # A copy for evaluation: the extractor freezes its parameters.
        eval_net = AidCnn(arch)
        eval_net.load_state_dict(net.state_dict())
        return AidCnnExtractor(
            eval_net, input_size=args.input_size, mean=mean, std=std, classes=classes
        )

    step = 0
    history = []
    epochs = progress_bar(range(1, args.epochs + 1), desc="epochs", unit="ep")
    for epoch in epochs:
        net.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x_train), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb = (augment(x_train[idx], args.input_size, gen) - mean_t) / std_t
            yb = y_train[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.no_bf16):
                logits = net(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
        rec = {
            "epoch": epoch,
            "loss": loss_sum / seen,
            "train_acc_augmented": correct / seen,
            "lr": lr_at(step - 1),
            "seconds": time.perf_counter() - t0,
        }
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            rec["test_acc"] = evaluate(make_extractor(), x_test, y_test)["accuracy"]
        history.append(rec)
        epochs.set_postfix(
            loss=f"{rec['loss']:.3f}", test=f"{rec.get('test_acc', float('nan')):.3f}"
        )
        fields = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())
        log(" ".join(fields))

    train_seconds = time.perf_counter() - t_start
    extractor = make_extractor()
    test_eval = evaluate(extractor, x_test, y_test)
    train_eval = evaluate(extractor, x_train, y_train)
    log(
        f"# final: train accuracy {train_eval['accuracy']:.4f} (un-augmented), test accuracy "
        f"{test_eval['accuracy']:.4f} on {len(x_test)} held-out images; chance "
        f"{1 / len(classes):.4f}; wall time {train_seconds / 60:.1f} min"
    )

    state = {k: v.detach().contiguous().float() for k, v in net.state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"format": ENCODER_FORMAT, "name": "aid-cnn"})
    config = {
        "format": ENCODER_FORMAT,
        "format_version": 1,
        "name": "aid-cnn",
        "description": (
            "Small residual CNN (GroupNorm, no BatchNorm/dropout) trained by terradiff as an "
            "offline FID/KID feature extractor; features = global-average-pooled penultimate "
            "layer."
        ),
        "architecture": arch.to_dict(),
        "num_parameters": n_params,
        "feature_dim": arch.widths[-1],
        "input_size": args.input_size,
        "input": "RGB images in [-1, 1], any size; resized to input_size x input_size inside "
        "(bilinear, antialias), mapped to [0, 1], then (x - mean) / std",
        "normalization": {"mean": mean, "std": std, "units": "[0, 1] RGB"},
        "classes": classes,
        "weights_sha256_16": file_fingerprint(out),
        "training": {
            "command": command,
            "script": "scripts/train_fid_encoder.py",
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "epochs": args.epochs,
            "wall_time_seconds": round(train_seconds, 1),
            "date": started.isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "threads": args.threads,
            "bf16_autocast": not args.no_bf16,
            "augmentation": "random resized crop (area 0.35-1, aspect 3/4-4/3) to input_size, "
            "8 dihedral transforms, brightness/contrast +-10%",
            "optimizer": f"AdamW lr {args.lr} wd {args.weight_decay}, cosine, warm-up "
            f"{args.warmup_epochs} epochs, batch {args.batch_size}, label smoothing "
            f"{args.label_smoothing}, grad-norm clip 5",
        },
        "metrics": {
            "train_accuracy": train_eval["accuracy"],
            "test_accuracy": test_eval["accuracy"],
            "test_per_class_accuracy": dict(
                zip(classes, [round(a, 4) for a in test_eval["per_class"]], strict=True)
            ),
            "chance": 1 / len(classes),
            "history": history,
        },
        "data": {
            "provenance": PROVENANCE,
            "root": str(args.data),
            "num_train": len(train_items),
            "num_test": len(test_items),
            "split": f"stratified per class, {args.test_fraction:.0%} held out, "
            f"numpy default_rng({args.seed}) permutation of the sorted file names",
            "test_files": [f"{p.parent.name}/{p.name}" for p, _ in test_items],
        },
    }
    atomic_write_text(config_path, json.dumps(config, indent=1) + "\n")
    for p in (out, config_path, log_path):
        os.chmod(p, 0o644)  # temp files are created 0600; assets are meant to be shared
    log(f"# wrote {out} ({out.stat().st_size / 1e6:.2f} MB), {config_path}, {log_path}")


if __name__ == "__main__":
    main()
