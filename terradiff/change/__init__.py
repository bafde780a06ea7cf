"""Change detection with diffusion features (DDPM-CD, Bandara et al. 2022).

Library code only: :mod:`terradiff.change.ddpm_cd` turns a frozen diffusion UNet and its noise
schedule into a multi-scale, multi-timestep feature extractor and pairs it with the light
:class:`~terradiff.nets.change.ChangeHead`. Data: :mod:`terradiff.data.levir`; metrics:
:mod:`terradiff.metrics.change`; the baseline: :class:`~terradiff.nets.change.SupervisedChangeUNet`.
"""

from terradiff.change.ddpm_cd import DDPMChangeDetector, DiffusionFeatures

__all__ = ["DDPMChangeDetector", "DiffusionFeatures"]
