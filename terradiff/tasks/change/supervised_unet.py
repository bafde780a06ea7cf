"""The supervised baseline: a UNet trained from scratch on the two dates stacked.

The comparison DDPM-CD (Bandara et al. 2022, Table 1) is read against: the
:class:`~terradiff.nets.change.SupervisedChangeUNet` (the ``model`` section's UNet with ``2 x
bands`` inputs and one change logit, its time input held at 0), trained on the labelled pairs
only. Choose ``model`` so that its parameter count is close to the DDPM-CD head's
(``terradiff evaluate`` reports ``trainable_parameters``) for a same-size comparison.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from terradiff.nets.change import SupervisedChangeUNet
from terradiff.tasks.base import fixed_seed_net
from terradiff.tasks.change.method import ChangeMethod, ChangeMethodConfig


class SupervisedUNetConfig(ChangeMethodConfig):
    """``change.method: supervised_unet``: the network is the ``model`` section's UNet."""

    method: Literal["supervised_unet"] = "supervised_unet"


class SupervisedUNetChange(ChangeMethod):
    """A UNet on the stacked before/after images -> change logits, from scratch."""

    name: ClassVar[str] = "supervised_unet"
    config_class = SupervisedUNetConfig
    summary: ClassVar[str] = "a UNet from scratch on the two dates stacked (the baseline)"

    def build_net(self) -> nn.Module:
        config = self.task.config
        model = config.model
        return fixed_seed_net(
            config.seed,
            lambda: SupervisedChangeUNet(
                self.task.num_bands,
                1,
                base_channels=model.base_channels,
                channel_mults=tuple(model.channel_mults),
                num_res_blocks=model.num_res_blocks,
                attention_resolutions=tuple(model.attention_resolutions),
                image_size=config.data.image_size,
                dropout=model.dropout,
                num_groups=model.num_groups,
                head_channels=model.head_channels,
            ),
        )

    def logits(
        self,
        net: nn.Module,
        before: torch.Tensor,
        after: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return net(before, after)
