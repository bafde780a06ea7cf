"""Carbon-density estimation as image-to-image translation: chips, splits, maps and previews.

The target (carbon density, Mg C/ha, scaled by ``carbon.max_density`` to [-1, 1]) is estimated
from the image (a multispectral composite) by the method of ``config.carbon.method`` (IIDM, IDM,
regression, VAE, GAN; one file each beside this one). Data are paired rasters
``<root>/<chip>/{image,target,mask}.tif`` (:mod:`terradiff.data.paired`, e.g. from
:func:`terradiff.carbon.prepare.prepare_biomassters`), split by chip: no chip is in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from terradiff.config import ExperimentConfig
from terradiff.data.band_info import BandInfo, TargetInfo
from terradiff.data.paired import PairedRasterDataset, RasterPair, find_pairs, split_of
from terradiff.data.transforms import get_scaling
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import DataError
from terradiff.tasks.base import Task, build_schedule, evaluating
from terradiff.tasks.carbon.method import CarbonBatch, CarbonMethod
from terradiff.tasks.registry import method_class

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Estimate:
    """An estimated map in the model's [-1, 1] scale.

    Attributes:
        mean: ``[B, T, H, W]`` the ensemble mean (the estimate).
        std: ``[B, T, H, W]`` the ensemble standard deviation (0 for one member or one pass).
        members: ensemble size.
        spec: the sampling that ran (None for one-pass methods).
    """

    mean: torch.Tensor
    std: torch.Tensor
    members: int
    spec: SamplingSpec | None = None


class CarbonTask(Task):
    """Estimate a carbon-density map from a ``C``-band image (``config.carbon``).

    Args:
        config: the experiment config (``task: carbon``, ``data.kind: paired``).
        band_info: the image bands (and the target's scaling) the net works on; read from the
            data when None (training) or from a checkpoint (inference).

    Attributes:
        method: the :class:`CarbonMethod` of ``config.carbon.method``.
    """

    preview_columns = 3  # preview rows read: image (RGB) | estimate | truth

    def __init__(self, config: ExperimentConfig, band_info: BandInfo | None = None) -> None:
        if config.carbon is None:
            raise DataError("task 'carbon' needs the config section 'carbon'")
        self.config = config
        self.carbon: Any = config.carbon
        self.target_scaling = get_scaling(
            {"name": "carbon", "mins": [0.0], "maxs": [self.carbon.max_density], "clip": True}
        )
        self.band_info = band_info or self._band_info_from_data()
        self.schedule = build_schedule(config)
        self.method: CarbonMethod = method_class("carbon", self.carbon.method)(self)  # type: ignore[assignment]
        self.net = self.method.build_net()

    @property
    def stochastic(self) -> bool:
        """The method samples its maps with a diffusion sampler (and can give ensembles)."""
        return self.method.stochastic

    # ------------------------------------------------------------------ data
    def pairs(self, split: str) -> list[RasterPair]:
        """The pairs of ``split`` (``train``, ``val``, ``test``): listed chips or a hash split."""
        if split not in SPLIT_NAMES:
            raise DataError(f"unknown split {split!r}; choose one of {list(SPLIT_NAMES)}")
        everything = find_pairs(self.config.data.root)
        c = self.carbon
        listed = {"train": c.train_chips, "val": c.val_chips, "test": c.test_chips}
        if any(v is not None for v in listed.values()):
            names = listed[split]
            if names is None:
                if split != "train":
                    return []
                others = set((c.val_chips or []) + (c.test_chips or []))
                return [p for p in everything if p.name not in others]
            known = {p.name: p for p in everything}
            missing = [n for n in names if n not in known]
            if missing:
                raise DataError(
                    f"carbon.{split}_chips lists {missing}, not found under "
                    f"{self.config.data.root}; available: {sorted(known)}"
                )
            return [known[n] for n in names]
        return [p for p in everything if split_of(p.name, c.val_fraction, c.test_fraction) == split]

    def dataset(self, split: str, *, train: bool = False) -> PairedRasterDataset:
        """Random crops of ``split`` (``train``) or whole rasters, unaugmented (evaluation)."""
        pairs = self.pairs(split)
        if not pairs:
            raise DataError(f"the {split} split has no chips; list some in carbon.{split}_chips")
        data = self.config.data
        return PairedRasterDataset(
            pairs,
            image_size=data.image_size if train else None,
            image_bands=data.bands,
            image_scaling=data.scaling_spec(),
            target_scaling=self.target_scaling.to_dict(),
            crop="random",
            crops_per_image=data.crops_per_image if train else 1,
            random_flip=data.random_flip and train,
            seed=self.config.seed,
        )

    def build_dataset(self) -> PairedRasterDataset:
        """The training split's random crops (built once)."""
        if self._dataset is None:
            self._dataset = self.dataset("train", train=True)
        return self._dataset  # type: ignore[return-value]

    def _band_info_from_data(self) -> BandInfo:
        dataset = self.build_dataset()
        return BandInfo(
            count=int(dataset.num_bands),
            names=tuple(dataset.band_names),
            scaling=self.config.data.scaling_spec(),
            target=TargetInfo(
                names=("carbon",), unit=self.carbon.unit, scaling=self.target_scaling.to_dict()
            ),
        )

    def check_input(self, image: torch.Tensor) -> None:
        """Refuse an image batch with other bands than the net's."""
        if image.ndim != 4 or image.shape[1] != self.num_bands:
            raise DataError(
                f"the model reads {self.num_bands}-band images {list(self.band_info.names)}; "
                f"got a tensor of shape {tuple(image.shape)}. Give [B, C, H, W] with the "
                "checkpoint's bands, in its order"
            )

    # ------------------------------------------------------------------ training
    def loss_mask(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pixels that count: valid, and forest when ``carbon.mask_loss`` (paper Eq. 4)."""
        valid = batch["valid"]
        return valid * batch["mask"] if self.carbon.mask_loss else valid

    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """The method's loss on one batch, under :meth:`loss_mask`."""
        pairs = CarbonBatch(batch["image"], batch["target"], self.loss_mask(batch))
        return self.method.training_loss(net, pairs, generator)

    # ------------------------------------------------------------------ inference
    @property
    def default_members(self) -> int:
        """Ensemble members when none are asked for (``carbon.ensemble``; 1 for one pass)."""
        return self.method.default_members

    @torch.no_grad()
    def estimate(
        self,
        net: nn.Module,
        image: torch.Tensor,
        *,
        ensemble: int | None = None,
        spec: SamplingSpec | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> Estimate:
        """The map of ``image`` (``[B, C, H, W]`` in [-1, 1]): ensemble mean and std.

        Sizes that are not multiples of the net's down-sampling factor are padded by
        reflection and cropped back. One-pass methods give one member whatever ``ensemble`` is.
        """
        self.check_input(image)
        if spec is None and self.stochastic:
            spec = self.sampling_spec()
        device = next(net.parameters()).device
        height, width = image.shape[-2:]
        multiple = getattr(net, "downsample_factor", 1)
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = image.float().to(device)
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        with evaluating(net), self.one_pass_precision(net):
            maps = self.method.predict(
                net,
                x,
                members=ensemble or self.default_members,
                spec=spec if self.stochastic else None,
                generator=generator,
                progress=progress,
            )
        stack = torch.stack(maps).float()
        mean = stack.mean(0)
        std = stack.std(0, unbiased=False) if len(maps) > 1 else torch.zeros_like(mean)
        return Estimate(
            mean[..., :height, :width],
            std[..., :height, :width],
            len(maps),
            spec if self.stochastic else None,
        )

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space map(s) in [-1, 1] -> Mg C/ha."""
        return (x.float().clamp(-1, 1) + 1) * 0.5 * self.carbon.max_density

    def std_to_physical(self, std: torch.Tensor) -> torch.Tensor:
        """A model-space standard deviation -> Mg C/ha (the scaling is linear)."""
        return std.float() * 0.5 * self.carbon.max_density

    def sample(
        self,
        net: nn.Module,
        num_images: int,
        *,
        generator: torch.Generator | None = None,
        spec: SamplingSpec | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> SamplerOutput:
        """Estimates for ``num_images`` training crops (what the preview shows)."""
        items = self.preview_items(num_images, ("image", "target", "mask"))
        result = self.estimate(net, items["image"], ensemble=1, spec=spec, generator=generator)
        return SamplerOutput(sample=result.mean, spec=result.spec)

    @property
    def preview_rgb_bands(self) -> list[int] | None:
        """The preview is already 3-band (RGB image, grey maps)."""
        return None

    def preview(self, net: nn.Module, num_images: int, generator: torch.Generator) -> torch.Tensor:
        """Rows of image (true colour) | estimate | truth, the maps in grey."""
        items = self.preview_items(min(num_images, 8), ("image", "target", "mask"))
        estimate = self.sample(net, len(items["image"]), generator=generator).sample.cpu()
        rgb = self.config.data.rgb_bands or [2, 1, 0][: min(3, self.num_bands)]
        image = (
            items["image"][:, rgb] if len(rgb) == 3 else items["image"][:, :1].repeat(1, 3, 1, 1)
        )
        # reflectance fills a small part of [-1, 1]: stretch each band's 2-98 percentiles
        flat = image.transpose(0, 1).reshape(image.shape[1], -1)
        low = flat.quantile(0.02, dim=1).view(1, -1, 1, 1)
        high = flat.quantile(0.98, dim=1).view(1, -1, 1, 1)
        image = ((image - low) / (high - low).clamp_min(1e-6)).clamp(0, 1) * 2 - 1
        rows = []
        for i in range(len(image)):
            rows += [image[i], estimate[i].repeat(3, 1, 1), items["target"][i].repeat(3, 1, 1)]
        return torch.stack(rows)
