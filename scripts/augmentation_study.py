"""Issue 15, item 6: do generated images help a scene classifier trained on few real images?

For each dataset and real-subset size ``k`` (images per class):

1. **Split** (fixed, by file index, written to ``results.json``): AID (30 classes x 150 images,
   ``<class>_<n>.jpg``): the real training subset is images ``1..k`` of every class, the
   validation set images ``51..100``, the test set images ``101..150``. EuroSAT-MS (10 classes,
   13 bands): the first ``k`` chips of every class of its ``train`` folder (sorted by name) train,
   the rest of ``train`` validates, its ``test`` folder tests.
2. **Generator**: a class-conditional UNet (``configs/conditional/aid_classes.yaml``: classes
   from the sub-folders, 10% null-class dropout for classifier-free guidance) trained by
   ``terradiff train`` on the real subset **only** (a folder of links to its files), so neither
   the validation nor the test images are ever seen by it.
3. **Synthetic data**: ``terradiff synthesize RUN --per-class N --guidance S`` for every
   candidate scale ``S``.
4. **Classifier**: a small residual CNN (terradiff's aid-cnn architecture, one block per stage,
   trained from scratch, ``--classifier-steps`` AdamW steps of batch 64) under four conditions:

   * ``real``: the real subset, no augmentation;
   * ``classic``: the real subset with the 8 dihedral transforms and, per batch, none, mixup
     (Zhang et al. 2018) or cutmix (Yun et al. 2019) drawn uniformly;
   * ``synthetic``: every batch half real, half generated images;
   * ``synthetic+classic``: both.

   The guidance scale is chosen on the validation set (``synthetic+classic``, seed 0); every
   condition then runs ``--seeds`` seeds and is scored on the test set.

The target of issue 15: ``synthetic+classic`` beats ``classic`` by at least 3 accuracy points on
AID at ``k = 10``, beyond one standard deviation (mean - std of the gain > 0 is not asked; the
mean +- std intervals of the two conditions must not overlap).

Everything runs on the CPU at the sizes given (``--image-size``, default 32 px, for the budget);
each finished measurement is saved at once, so an interrupted run continues where it stopped.

Run (what ``make augmentation-study`` does)::

    python scripts/augmentation_study.py --datasets aid eurosat --work outputs/augmentation \\
        --out reports/augmentation
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.study_common import open_results, record_command, train  # noqa: E402
from terradiff.metrics.aid_encoder import AidCnn, AidCnnConfig  # noqa: E402

CONDITIONS = ("real", "classic", "synthetic", "synthetic+classic")
TARGET_GAIN = 0.03


# --------------------------------------------------------------------------------------------
# Splits (pure; tested in tests/test_augmentation_study.py)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """File lists of one dataset: ``train[c]`` is the ordered pool the first ``k`` come from."""

    classes: list[str]
    train: dict[str, list[Path]]
    val: dict[str, list[Path]]
    test: dict[str, list[Path]]

    def subset(self, k: int) -> dict[str, list[Path]]:
        """The first ``k`` training files of every class (an error if a class has fewer)."""
        short = {c: len(v) for c, v in self.train.items() if len(v) < k}
        if short:
            raise ValueError(f"classes with fewer than {k} training files: {short}")
        return {c: self.train[c][:k] for c in self.classes}

    def describe(self, k: int) -> dict[str, Any]:
        """Counts and the first/last file of each part (for ``results.json``)."""
        parts = {"train": self.subset(k), "val": self.val, "test": self.test}
        return {
            name: {
                "images": sum(len(v) for v in files.values()),
                "example": [files[self.classes[0]][0].name, files[self.classes[0]][-1].name],
            }
            for name, files in parts.items()
        }


def file_number(path: Path) -> int:
    """The trailing number of an AID file name (``airport_17.jpg`` -> 17)."""
    match = re.search(r"_(\d+)\.[^.]+$", path.name)
    if match is None:
        raise ValueError(f"{path} has no _<number> before its extension")
    return int(match.group(1))


def aid_split(root: Path, max_train: int = 50) -> Split:
    """AID: train pool images ``1..max_train``, validation ``51..100``, test ``101..150``."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    train, val, test = {}, {}, {}
    for name in classes:
        files = sorted((root / name).glob("*.jpg"), key=file_number)
        train[name] = [p for p in files if 1 <= file_number(p) <= max_train]
        val[name] = [p for p in files if 51 <= file_number(p) <= 100]
        test[name] = [p for p in files if 101 <= file_number(p) <= 150]
    return Split(classes, train, val, test)


def eurosat_split(root: Path, k: int) -> Split:
    """EuroSAT-MS: the first ``k`` of ``train/<class>`` train, the rest validate, ``test`` tests."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    train, val, test = {}, {}, {}
    for name in classes:
        files = sorted((root / "train" / name).glob("*.tif"))
        train[name], val[name] = files[:k], files[k:]
        test[name] = sorted((root / "test" / name).glob("*.tif"))
    return Split(classes, train, val, test)


def summarize(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of accuracies."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "n": int(array.size)}


def gain_verdict(with_synthetic: dict[str, float], classic: dict[str, float]) -> dict[str, Any]:
    """Issue 15's test: a gain of at least 3 points whose mean +- std intervals do not overlap."""
    gain = with_synthetic["mean"] - classic["mean"]
    separated = with_synthetic["mean"] - with_synthetic["std"] > classic["mean"] + classic["std"]
    return {
        "gain": gain,
        "separated": bool(separated),
        "met": bool(separated and gain >= TARGET_GAIN),
    }


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """``[bands, H, W]`` float32 in the file's own units (JPEG via PIL, GeoTIFF via rasterio)."""
    if path.suffix.lower() in {".tif", ".tiff"}:
        import rasterio

        with rasterio.open(path) as src:
            return src.read().astype(np.float32)
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)


def load_images(
    files: dict[str, list[Path]], classes: list[str], size: int
) -> tuple[Tensor, Tensor]:
    """All files resized to ``size`` (anti-aliased bilinear) and their class indices."""
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in files.get(name, []):
            x = torch.from_numpy(read_image(path))[None]
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
            images.append(x[0])
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def link_subset(files: dict[str, list[Path]], folder: Path) -> Path:
    """``folder/<class>/<file>`` links to ``files`` (the generator's training folder)."""
    for name, paths in files.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for path in paths:
            link = folder / name / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    return folder


# --------------------------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------------------------


def dihedral(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image under one of the 8 rotations/flips (aerial scenes have no canonical up)."""
    out = torch.empty_like(x)
    codes = torch.randint(0, 8, (x.shape[0],), generator=generator)
    for i, code in enumerate(codes.tolist()):
        image = torch.rot90(x[i], code % 4, dims=(-2, -1))
        out[i] = image.flip(-1) if code >= 4 else image
    return out


def mix(
    x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """None, mixup (alpha 0.2) or cutmix (alpha 1) drawn uniformly; soft targets ``[B, C]``."""
    target = F.one_hot(y, num_classes).float()
    choice = int(torch.randint(0, 3, (1,), generator=generator))
    if choice == 0:
        return x, target
    perm = torch.randperm(x.shape[0], generator=generator)
    alpha = 0.2 if choice == 1 else 1.0
    draw = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(draw).beta(alpha, alpha))
    if choice == 1:
        return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]
    h, w = x.shape[-2:]
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    top = int(torch.randint(0, h - cut_h + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - cut_w + 1, (1,), generator=generator))
    mixed = x.clone()
    mixed[..., top : top + cut_h, left : left + cut_w] = x[perm][
        ..., top : top + cut_h, left : left + cut_w
    ]
    kept = 1 - (cut_h * cut_w) / (h * w)
    return mixed, kept * target + (1 - kept) * target[perm]


@dataclass
class ClassifierSetup:
    """What one classifier run trains on and how."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1


def train_classifier(
    real: tuple[Tensor, Tensor],
    synthetic: tuple[Tensor, Tensor] | None,
    classic: bool,
    num_classes: int,
    seed: int,
    setup: ClassifierSetup,
) -> AidCnn:
    """A fresh classifier trained on normalised ``real`` (+ half of every batch ``synthetic``)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    bands = real[0].shape[1]
    net = AidCnn(
        AidCnnConfig(
            widths=(32, 64, 128, 256),
            blocks=(1, 1, 1, 1),
            num_classes=num_classes,
            in_channels=bands,
        )
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=setup.lr, weight_decay=setup.weight_decay)
    warmup = max(1, setup.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / setup.steps)))
        ),
    )
    net.train()
    for _ in range(setup.steps):
        half = setup.batch_size // 2 if synthetic is not None else setup.batch_size
        pick = torch.randint(0, real[0].shape[0], (half,), generator=generator)
        x, y = real[0][pick], real[1][pick]
        if synthetic is not None:
            pick = torch.randint(
                0, synthetic[0].shape[0], (setup.batch_size - half,), generator=generator
            )
            x, y = torch.cat([x, synthetic[0][pick]]), torch.cat([y, synthetic[1][pick]])
        if classic:
            x = dihedral(x, generator)
            x, target = mix(x, y, num_classes, generator)
        else:
            target = F.one_hot(y, num_classes).float()
        target = target * (1 - setup.label_smoothing) + setup.label_smoothing / num_classes
        loss = torch.sum(-target * F.log_softmax(net(x), dim=1), dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: AidCnn, data: tuple[Tensor, Tensor], batch: int = 500) -> float:
    """Top-1 accuracy of ``net`` on ``data``."""
    correct = 0
    for start in range(0, data[0].shape[0], batch):
        logits = net(data[0][start : start + batch])
        correct += int((logits.argmax(1) == data[1][start : start + batch]).sum())
    return correct / data[0].shape[0]


class Normaliser:
    """Per-band mean/std of the real training subset, applied to every image set."""

    def __init__(self, images: Tensor) -> None:
        self.mean = images.mean(dim=(0, 2, 3), keepdim=True)
        self.std = images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)

    def __call__(self, data: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return (data[0] - self.mean) / self.std, data[1]


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSetup:
    """How one dataset is split, generated and read."""

    name: str
    root: Path
    subsets: tuple[int, ...]
    overrides: tuple[str, ...] = ()


def dataset_setups(shared: Path) -> dict[str, DatasetSetup]:
    return {
        "aid": DatasetSetup("aid", shared / "aid", (10, 25)),
        "eurosat": DatasetSetup(
            "eurosat",
            shared / "eurosat-ms",
            (10,),
            ("data.kind=geotiff_chips", "data.scaling=sentinel2", "data.rgb_bands=[3,2,1]"),
        ),
    }


def split_of(setup: DatasetSetup, k: int) -> Split:
    return aid_split(setup.root) if setup.name == "aid" else eurosat_split(setup.root, k)


def train_generator(
    setup: DatasetSetup, k: int, files: dict[str, list[Path]], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The class-conditional generator of one real subset (resumed if interrupted)."""
    real_dir = link_subset(files, work / "real")
    overrides = [
        f"data.root={real_dir}",
        f"output_dir={work / 'generator'}",
        f"data.image_size={args.image_size}",
        f"train.max_steps={args.generator_steps}",
        "train.max_minutes=100000",
        f"train.batch_size={args.generator_batch}",
        f"train.save_every={max(1, args.generator_steps // 4)}",
        f"train.sample_every={args.generator_steps}",
        "train.progress=false",
        *setup.overrides,
    ]
    return train(f"{setup.name}-k{k}-generator", REPO / args.generator_config, overrides)


def synthesize(run_dir: Path, out: Path, per_class: int, scale: float, seed: int) -> Path:
    """``terradiff synthesize`` into ``out`` (skipped when its record exists)."""
    from terradiff.cli import main as terradiff

    if not (out / "synthesize.json").is_file():
        argv = ["synthesize", str(run_dir), "--per-class", str(per_class), "--out", str(out)]
        argv += ["--guidance", str(scale), "--seed", str(seed), "--overwrite"]
        if terradiff(argv) != 0:
            raise SystemExit(f"terradiff {' '.join(argv)} failed")
    return out


def synthetic_files(folder: Path, classes: list[str]) -> dict[str, list[Path]]:
    return {c: sorted((folder / c).glob("*.tif")) for c in classes}


def judge_synthetic(folder: Path, classes: list[str], size: int) -> dict[str, Any] | None:
    """The shipped aid-cnn's accuracy on the generated images w.r.t. their requested class
    (:func:`terradiff.evaluate.conditional_accuracy`, 95% bootstrap interval over images)."""
    from terradiff.evaluate import conditional_accuracy
    from terradiff.metrics.encoders import load_feature_extractor

    images, labels = load_images(synthetic_files(folder, classes), classes, size)
    return conditional_accuracy(
        images / 127.5 - 1.0, labels, classes, load_feature_extractor("aid-cnn")
    )


def sample_figure(
    split: Split, k: int, folder: Path, size: int, path: Path, classes: int = 8, per_row: int = 6
) -> Path:
    """``per_row`` real training images of each of the first ``classes`` classes (one row per
    class), then as many generated ones in the same order (8-bit: as is; else a percentile
    stretch of the visible bands B4, B3, B2)."""
    from terradiff.viz import save_image_grid

    names = split.classes[:classes]
    real, _ = load_images({c: split.subset(k)[c][:per_row] for c in names}, names, size)
    fake, _ = load_images(
        {c: synthetic_files(folder, [c])[c][:per_row] for c in names}, names, size
    )
    images = torch.cat([real, fake])
    if images.shape[1] == 3:
        return save_image_grid(images / 127.5 - 1, path, nrow=per_row, scale=3)
    low, high = images.amin(), images.amax()
    images = (images - low) / (high - low).clamp_min(1e-6) * 2 - 1
    return save_image_grid(
        images, path, nrow=per_row, rgb_bands=[3, 2, 1], stretch="percentile", scale=3
    )


def run_cell(
    results: dict[str, Any],
    save: Any,
    key: str,
    data: dict[str, tuple[Tensor, Tensor]],
    synthetic: tuple[Tensor, Tensor] | None,
    classic: bool,
    seed: int,
    setup: ClassifierSetup,
) -> dict[str, float]:
    """Train and score one classifier, or return its saved scores."""
    cells = results.setdefault("cells", {})
    if key not in cells:
        start = time.monotonic()
        net = train_classifier(
            data["train"], synthetic, classic, int(data["train"][1].max()) + 1, seed, setup
        )
        cells[key] = {
            "val": accuracy(net, data["val"]),
            "test": accuracy(net, data["test"]),
            "seconds": round(time.monotonic() - start, 1),
        }
        save()
        print(f"{key}: val {cells[key]['val']:.3f} test {cells[key]['test']:.3f}", flush=True)
    return cells[key]


def study_subset(
    setup: DatasetSetup, k: int, results: dict[str, Any], save: Any, args: argparse.Namespace
) -> None:
    split = split_of(setup, k)
    prefix = f"{setup.name}/k{k}"
    work = Path(args.work) / setup.name / f"k{k}"
    files = split.subset(k)
    results.setdefault("splits", {})[prefix] = split.describe(k)
    ignored = {"redo", "report_only", "datasets", "subsets", "out"}
    results.setdefault("settings", {})[prefix] = {
        key: value for key, value in vars(args).items() if key not in ignored
    }
    results.setdefault("generators", {})[prefix] = train_generator(setup, k, files, work, args)
    save()
    run_dir = work / "generator"
    size = args.image_size
    raw = {
        "train": load_images(files, split.classes, size),
        "val": load_images(split.val, split.classes, size),
        "test": load_images(split.test, split.classes, size),
    }
    normalise = Normaliser(raw["train"][0])
    data = {name: normalise(part) for name, part in raw.items()}
    clf = ClassifierSetup(steps=args.classifier_steps)
    synthetic: dict[float, tuple[Tensor, Tensor]] = {}
    for scale in args.scales:
        folder = synthesize(run_dir, work / f"synthetic_s{scale:g}", args.per_class, scale, 1000)
        synthetic[scale] = normalise(
            load_images(synthetic_files(folder, split.classes), split.classes, size)
        )
    if setup.name == "aid":  # does the shipped aid-cnn see the asked class in the samples?
        judged = results.setdefault("judge", {})
        for scale in args.scales:
            key = f"{prefix}/s{scale:g}"
            if key not in judged:
                folder = work / f"synthetic_s{scale:g}"
                judged[key] = judge_synthetic(folder, split.classes, size)
                save()
    # the guidance scale: best validation accuracy of synthetic+classic, seed 0
    val = {
        scale: run_cell(
            results,
            save,
            f"{prefix}/synthetic+classic/s{scale:g}/seed0",
            data,
            synthetic[scale],
            True,
            0,
            clf,
        )["val"]
        for scale in args.scales
    }
    chosen = max(args.scales, key=lambda s: (val[s], -s))
    results.setdefault("chosen_scale", {})[prefix] = chosen
    save()
    figure = Path(args.out) / f"samples_{setup.name}_k{k}.png"  # real rows, then generated
    if not figure.is_file():
        sample_figure(split, k, work / f"synthetic_s{chosen:g}", size, figure)
    for condition in CONDITIONS:
        for seed in range(args.seeds):
            uses = "synthetic" in condition
            key = f"{prefix}/{condition}" + (f"/s{chosen:g}" if uses else "") + f"/seed{seed}"
            run_cell(
                results,
                save,
                key,
                data,
                synthetic[chosen] if uses else None,
                "classic" in condition,
                seed,
                clf,
            )


def table(results: dict[str, Any], prefix: str, seeds: int) -> dict[str, dict[str, float]]:
    """Test accuracy mean +- std per condition of one subset (at its chosen scale)."""
    chosen = results["chosen_scale"][prefix]
    rows = {}
    for condition in CONDITIONS:
        scale = f"/s{chosen:g}" if "synthetic" in condition else ""
        values = [
            results["cells"][f"{prefix}/{condition}{scale}/seed{seed}"]["test"]
            for seed in range(seeds)
            if f"{prefix}/{condition}{scale}/seed{seed}" in results["cells"]
        ]
        if values:
            rows[condition] = summarize(values)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["aid"], choices=["aid", "eurosat"])
    parser.add_argument("--subsets", nargs="+", type=int, help="real images per class")
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--work", default="outputs/augmentation")
    parser.add_argument("--out", default="reports/augmentation")
    parser.add_argument("--generator-config", default="configs/conditional/aid_classes.yaml")
    parser.add_argument("--generator-steps", type=int, default=1500)
    parser.add_argument("--generator-batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=50, help="generated images per class")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 3.0])
    parser.add_argument("--classifier-steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--redo", action="store_true", help="forget saved results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    results, save = open_results(out, redo=args.redo)
    if "seeds" in results.get("settings", {}):  # the flat layout of the first runs
        results["settings"] = {}
    if not args.report_only:
        results["seeds"] = args.seeds
        record_command(results, argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    setups = dataset_setups(Path(args.shared))
    if not args.report_only:
        for name in args.datasets:
            setup = setups[name]
            for k in args.subsets or setup.subsets:
                study_subset(setup, k, results, save, args)
    save()
    from scripts.augmentation_report import write_report

    write_report(results, out)


if __name__ == "__main__":
    main()
