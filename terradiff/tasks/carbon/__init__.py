"""Carbon-density estimation: the task and its methods (one file each), registered here.

A new method is a new file with a :class:`~terradiff.tasks.carbon.method.CarbonMethod` subclass
and its config class, plus one line below.
"""

from terradiff.tasks.carbon.gan import GANCarbon
from terradiff.tasks.carbon.iidm import IDM, IIDM
from terradiff.tasks.carbon.method import CarbonBatch, CarbonMethod, CarbonMethodConfig
from terradiff.tasks.carbon.regression import RegressionCarbon
from terradiff.tasks.carbon.task import SPLIT_NAMES, CarbonTask, Estimate
from terradiff.tasks.carbon.vae import VAECarbon
from terradiff.tasks.registry import register_method

register_method(IIDM, default=True)
register_method(IDM)
register_method(RegressionCarbon)
register_method(VAECarbon)
register_method(GANCarbon)

__all__ = [
    "SPLIT_NAMES",
    "CarbonBatch",
    "CarbonMethod",
    "CarbonMethodConfig",
    "CarbonTask",
    "Estimate",
]
