"""Bridges between terradiff and the ecosystems around it.

* :mod:`terradiff.interop.diffusers_unet` -- terradiff's :class:`~terradiff.nets.unet.UNet` <->
  a diffusers ``UNet2DModel`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``):
  the config mapping, with an error naming every diffusers key that terradiff cannot represent;
  :mod:`terradiff.interop.diffusers_weights` renames the weights.
* :mod:`terradiff.interop.diffusers_schedule` -- :class:`~terradiff.diffusion.schedules.
  NoiseSchedule` <-> a ``DDPMScheduler`` / ``DDIMScheduler`` config.
* :mod:`terradiff.interop.diffusers_run` -- a terradiff run folder <-> a diffusers folder (what
  ``terradiff export-diffusers`` and ``terradiff import-diffusers`` do).
* :mod:`terradiff.interop.stac` -- local STAC Items as inputs of ``estimate``/``super-resolve``
  and a STAC Item beside every raster they write (``pystac``, the ``stac`` extra).

The diffusers modules never import diffusers: reading and writing the folders needs only
``safetensors`` and JSON; only the tests that compare outputs with diffusers' own forward pass
need the library (the ``dev`` extra installs it).
"""

from __future__ import annotations

__all__: list[str] = []
