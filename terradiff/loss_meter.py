"""The training loss, kept on the device between log points (no host sync per step).

Reading a CUDA tensor on the host (``float(loss)``, ``.item()``) waits for every queued kernel:
one such read per step stalls the GPU's queue each step. :class:`LossMeter` sums the step losses
on the device and notes whether any was NaN/inf, and :meth:`LossMeter.flush` reads both with one
transfer, at the points where the host needs them anyway (a log line, a checkpoint, the end).
The trainer therefore finds a non-finite loss at the next flush rather than at once; it flushes
before every checkpoint, so a checkpoint never holds weights trained on a NaN/inf loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LossMeter", "LossWindow"]


@dataclass(frozen=True)
class LossWindow:
    """The steps since the last flush.

    Attributes:
        first_step, last_step: the first and last step of the window (1-based, inclusive).
        mean: the mean loss over the window (NaN when a loss was not finite).
        finite: every loss of the window was finite.
        first_bad_step: the first step whose loss was NaN/inf, or None.
    """

    first_step: int
    last_step: int
    mean: float
    finite: bool
    first_bad_step: int | None

    @property
    def steps(self) -> int:
        return self.last_step - self.first_step + 1


class LossMeter:
    """Step losses summed on their device, read on the host only by :meth:`check`/:meth:`flush`.

    Args:
        device: where the losses live (the running sum is kept there).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._start_window()

    def _start_window(self) -> None:
        self._first_step: int | None = None
        self._count = 0  # losses in the window
        self._host_sum = 0.0  # of the losses already read by check()
        self._host_count = 0
        self._first_bad_step: int | None = None
        self._start_device_part()

    def _start_device_part(self) -> None:
        self._sum = torch.zeros((), dtype=torch.float64, device=self.device)
        # index (within the device part) of the first non-finite loss; int64 max if none
        self._first_bad = torch.full((), _NONE, dtype=torch.int64, device=self.device)

    def __len__(self) -> int:
        """Losses added since the last flush."""
        return self._count

    def add(self, loss: torch.Tensor, step: int) -> None:
        """Add the (scalar) loss of ``step`` without reading it on the host."""
        value = loss.detach().to(torch.float64)
        index = torch.where(~torch.isfinite(value), self._count - self._host_count, _NONE)
        self._first_bad = torch.minimum(self._first_bad, index)
        self._sum = self._sum + value
        if self._first_step is None:
            self._first_step = step
        self._count += 1

    def check(self) -> LossWindow | None:
        """The window since the last flush so far (one device-to-host transfer), kept open: a
        checkpoint asks whether its steps were finite without ending a log window. None when
        nothing was added."""
        if self._count == 0:
            return None
        pending = self._count - self._host_count
        if pending:
            total, first_bad = torch.stack([self._sum, self._first_bad.double()]).tolist()
            if first_bad < pending and self._first_bad_step is None:
                start = int(self._first_step or 0) + self._host_count
                self._first_bad_step = start + int(first_bad)
            self._host_sum += total
            self._host_count = self._count
            self._start_device_part()
        first = int(self._first_step or 0)
        finite = self._first_bad_step is None
        return LossWindow(
            first_step=first,
            last_step=first + self._count - 1,
            mean=self._host_sum / self._count if finite else float("nan"),
            finite=finite,
            first_bad_step=self._first_bad_step,
        )

    def flush(self) -> LossWindow | None:
        """The window since the last flush (:meth:`check`), then start a new one."""
        window = self.check()
        self._start_window()
        return window


_NONE = torch.iinfo(torch.int64).max
