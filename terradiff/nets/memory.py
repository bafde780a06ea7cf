"""Where terradiff decides a net's memory format (NCHW or ``torch.channels_last``).

The rule lives here once; the nets (:class:`~terradiff.nets.unet.UNet`,
:class:`~terradiff.nets.light.LightSRNet`) call :func:`use_channels_last` in ``forward``, and the
Trainer applies ``train.channels_last`` with :func:`set_channels_last`.
"""

from __future__ import annotations

import torch
from torch import nn


def use_channels_last(policy: bool | None, device: torch.device) -> bool:
    """Whether activations run channels-last: ``policy``, or on CPU only when it is None.

    On CPU oneDNN's NHWC convolutions are the fast path: the distilled SR student runs 1.83x
    faster channels-last than NCHW on one AVX2 core (``benchmarks/bench_student_profile.py``,
    result in ``benchmarks/results/student_profile.txt``).
    """
    return device.type == "cpu" if policy is None else bool(policy)


def set_channels_last(net: nn.Module, policy: bool | None) -> nn.Module:
    """Give ``net`` one memory-format policy, in place.

    Every submodule with a ``channels_last`` attribute runs its activations under ``policy``
    (None = CPU only), and when ``policy`` is True the weights are stored channels-last too (the
    checkpoint writer saves them contiguous, so checkpoints do not depend on it).
    """
    for module in net.modules():
        if hasattr(module, "channels_last"):
            module.channels_last = policy
    if policy:
        net.to(memory_format=torch.channels_last)
    return net
