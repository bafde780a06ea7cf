"""terradiff: diffusion models for Earth-observation imagery.

Images inside the library are float tensors ``[B, C, H, W]`` in ``[-1, 1]``; physical units appear
only at the edges (rasters in, maps out). See ``../shared/GUIDE.md`` for the architecture.
"""

__version__ = "0.1.0"
