"""Super-resolution degradations: bicubic down/up-sampling and a second-order "real-world" pipeline.

Two ways to make a low-resolution (LR) image from a high-resolution (HR) one, both working on
float tensors ``[C, H, W]`` or ``[B, C, H, W]`` in [-1, 1] with any number of bands:

* **Bicubic** (:func:`bicubic_downsample`): the classic SR benchmark degradation, an anti-aliased
  bicubic shrink by a factor ``scale`` (integer or not). The LR size is
  ``round(H / scale) x round(W / scale)`` rounded half up (:func:`lr_size`). With
  ``antialias=True``, :func:`torch.nn.functional.interpolate` widens the cubic kernel (``a = -0.5``)
  by the scale factor, which equals PIL's ``Image.resize(..., BICUBIC)`` to float precision.
  :func:`upsample_to` is the inverse direction used by SR3 conditioning (Saharia et al. 2021,
  "Image Super-Resolution via Iterative Refinement", Sec. 2.4: the LR image is bicubic-upsampled
  to the HR size and concatenated with ``x_t``).
* **Real-world** (:func:`degrade_real`): the high-order degradation model of Real-ESRGAN (Wang
  et al. 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
  Data", Sec. 3.1-3.3 and Fig. 2), applied twice::

      x -> [blur -> random resize -> noise -> JPEG]          first order  (Sec. 3.1)
        -> [blur -> random resize -> noise]                   second order (Sec. 3.2)
        -> {resize to LR size + sinc filter, JPEG} in random order       (Sec. 3.3)

  Blur kernels are isotropic/anisotropic Gaussian, generalized Gaussian and plateau kernels
  (Sec. 3.1, "Blur") or 2-D sinc filters (Sec. 3.3, ringing/overshoot); resizing picks "up",
  "down" or "keep" and a mode among area/bilinear/bicubic; noise is Gaussian or Poisson, per band
  ("color") or shared by all bands ("gray"); JPEG goes through PIL at a random quality. The default
  ranges of :class:`RealDegradationConfig` are those of Real-ESRGAN's released training options
  (``train_realesrnet_x4plus.yml``). JPEG only exists for 8-bit RGB: it is applied to 3-band
  images, to each band of other images as a grayscale JPEG when ``jpeg_per_band=True``, and
  skipped otherwise (recorded as ``"skipped"`` in the parameters).

Randomness comes only from the ``generator`` argument (a :class:`torch.Generator` or an ``int``
seed), never from the global RNG, so the same seed gives the same LR image. Internally the
pipeline works in [0, 1] (where Real-ESRGAN's noise levels, given on the 0-255 scale, are
defined), clips to [0, 1] after every stage, and returns [-1, 1].

The package keeps one concern per module: :mod:`~terradiff.data.degrade.resample` (bicubic
resampling and the input checks), :mod:`~terradiff.data.degrade.config` (the sampling ranges of
the real-world pipeline) and :mod:`~terradiff.data.degrade.real` (the real-world pipeline and
:func:`make_lr`).
"""

from terradiff.data.degrade.config import (
    KERNEL_TYPES,
    RESIZE_MODES,
    SECOND_ORDER_DEFAULTS,
    DegradationStage,
    RealDegradationConfig,
)
from terradiff.data.degrade.real import LR_KINDS, GeneratorLike, blur_kernel, degrade_real, make_lr
from terradiff.data.degrade.resample import bicubic_downsample, lr_size, upsample_to

__all__ = [
    "KERNEL_TYPES",
    "LR_KINDS",
    "RESIZE_MODES",
    "SECOND_ORDER_DEFAULTS",
    "DegradationStage",
    "GeneratorLike",
    "RealDegradationConfig",
    "bicubic_downsample",
    "blur_kernel",
    "degrade_real",
    "lr_size",
    "make_lr",
    "upsample_to",
]
