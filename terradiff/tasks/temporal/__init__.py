"""Temporal generation: the task and its methods (one file each), registered here.

A new method is a new file with a :class:`~terradiff.tasks.temporal.method.TemporalMethod`
subclass and its config class, plus one line below.
"""

from terradiff.tasks.registry import register_method
from terradiff.tasks.temporal.concat import ConcatConfig, ConcatTemporal
from terradiff.tasks.temporal.controlnet import ControlNetConfig, ControlNetTemporal
from terradiff.tasks.temporal.method import TemporalMethod, TemporalMethodConfig
from terradiff.tasks.temporal.regression import RegressionConfig, RegressionTemporal
from terradiff.tasks.temporal.task import TemporalTask, find_series

register_method(ConcatTemporal, default=True)
register_method(RegressionTemporal)
register_method(ControlNetTemporal)

__all__ = [
    "ConcatConfig",
    "ConcatTemporal",
    "ControlNetConfig",
    "ControlNetTemporal",
    "RegressionConfig",
    "RegressionTemporal",
    "TemporalMethod",
    "TemporalMethodConfig",
    "TemporalTask",
    "find_series",
]
