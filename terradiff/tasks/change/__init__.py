"""Change detection: the task and its methods (one file each), registered here.

A new method is a new file with a :class:`~terradiff.tasks.change.method.ChangeMethod` subclass
and its config class, plus one line below.
"""

from terradiff.tasks.change.ddpm_cd import DDPMCD, DDPMCDConfig
from terradiff.tasks.change.method import ChangeMethod, ChangeMethodConfig
from terradiff.tasks.change.supervised_unet import SupervisedUNetChange, SupervisedUNetConfig
from terradiff.tasks.change.task import EVALUATION_WINDOW, LEVIR_BANDS, ChangeTask
from terradiff.tasks.registry import register_method

register_method(SupervisedUNetChange, default=True)
register_method(DDPMCD)

__all__ = [
    "DDPMCD",
    "EVALUATION_WINDOW",
    "LEVIR_BANDS",
    "ChangeMethod",
    "ChangeMethodConfig",
    "ChangeTask",
    "DDPMCDConfig",
    "SupervisedUNetChange",
    "SupervisedUNetConfig",
]
