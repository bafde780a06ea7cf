"""Super-resolution: the task and its methods (one file each), registered here.

A new method is a new file with an :class:`~terradiff.tasks.super_resolution.method.SRMethod`
subclass and its config class, plus one line below.
"""

from terradiff.tasks.registry import register_method
from terradiff.tasks.super_resolution.implicit import ImplicitSR
from terradiff.tasks.super_resolution.method import SRBatch, SRMethod, SRMethodConfig
from terradiff.tasks.super_resolution.regression import RegressionSR
from terradiff.tasks.super_resolution.single_step import SingleStepSR
from terradiff.tasks.super_resolution.sr3 import SR3
from terradiff.tasks.super_resolution.student import StudentSR
from terradiff.tasks.super_resolution.task import SuperResolutionTask

register_method(SR3, default=True)
register_method(RegressionSR)
register_method(ImplicitSR)
register_method(SingleStepSR)
register_method(StudentSR)

__all__ = ["SRBatch", "SRMethod", "SRMethodConfig", "SuperResolutionTask"]
