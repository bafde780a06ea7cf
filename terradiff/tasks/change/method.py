"""What every change-detection method shares: the config keys, the loss and the prediction.

A method of :class:`~terradiff.tasks.change.task.ChangeTask` is a :class:`ChangeMethod` in a file
of its own beside this one. The task reads the before/after/label pairs and scores the maps; the
method builds its network and says how the network turns a pair into change logits
(:meth:`ChangeMethod.logits`). Every method is trained with the binary cross-entropy of those
logits against the label, optionally weighting the (rare) change pixels by ``pos_weight`` (the
weighted BCE of change-detection baselines, e.g. Daudt et al. 2018, "Fully Convolutional Siamese
Networks for Change Detection", Sec. III).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from terradiff.config import MethodConfig
from terradiff.tasks.registry import Method


class ChangeMethodConfig(MethodConfig):
    """Keys of every change-detection method (``config.change``).

    ``data`` (``kind: levir_cd``) points at a LEVIR-CD folder (``A/``, ``B/``, ``label/``);
    ``data.image_size`` is the side of the random training crops, ``data.crops_per_image`` their
    number per pair, ``data.rule`` the fixed split (:mod:`terradiff.data.levir`).
    """

    pos_weight: float | None = Field(
        None,
        gt=0.0,
        description="Weight of the change pixels in the BCE loss (null: 1); e.g. the ratio of "
        "unchanged to changed pixels for a rare change class.",
    )
    threshold: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Change probability above which a pixel is change (evaluate; the default "
        "of terradiff change --threshold).",
    )


class ChangeMethod(Method):
    """One way to detect change (see :class:`terradiff.tasks.registry.Method`)."""

    section: ClassVar[str] = "change"

    @abc.abstractmethod
    def logits(
        self,
        net: nn.Module,
        before: torch.Tensor,
        after: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Change logits ``[B, 1, H, W]`` of the pairs ``[B, bands, H, W]`` in [-1, 1].

        ``generator`` feeds any randomness of the method (the diffusion noise of DDPM-CD); the
        sides are multiples of the net's ``downsample_factor``.
        """

    def training_loss(
        self, net: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        """BCE with logits against ``batch["label"]`` (change pixels weighted by ``pos_weight``)."""
        logits = self.logits(net, batch["before"], batch["after"], generator).float()
        weight = self.config.pos_weight
        pos_weight = None if weight is None else torch.tensor(weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(
            logits, batch["label"].float(), pos_weight=pos_weight
        )
