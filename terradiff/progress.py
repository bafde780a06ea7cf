"""Progress a person can read: a tqdm bar in a terminal, periodic log lines everywhere else.

A carriage-return bar redrawn ten times a second is right on a terminal and wrong in a log file
(a batch job's ``stderr``, ``nohup``, CI): there it becomes one enormous line. :func:`progress_bar`
gives a tqdm bar when the stream is a terminal and otherwise a :class:`LogProgress`, which writes
one line every :data:`DEFAULT_INTERVAL` seconds (``TERRADIFF_PROGRESS_INTERVAL`` overrides)::

    2026-11-30 06:30:12 train: step 120/2000 (6%) | loss=0.0345 lr=1.00e-03 | 2.05 step/s,
    16.4 img/s | elapsed 58s | ETA 15m17s

(one line in the file) and, when it closes, a last line with the totals (not for transient bars,
``leave=False``: a sampler's steps inside a larger loop). Both objects take the part of tqdm's
interface the package uses: iteration, ``update``, ``set_postfix``, ``close`` and ``with``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from tqdm.auto import tqdm

#: Seconds between two log lines of a :class:`LogProgress`.
DEFAULT_INTERVAL = 30.0
#: Environment variable that sets the interval (seconds) instead.
INTERVAL_ENV = "TERRADIFF_PROGRESS_INTERVAL"


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def log_interval(default: float = DEFAULT_INTERVAL) -> float:
    """The interval between log lines: ``TERRADIFF_PROGRESS_INTERVAL`` when it holds a number
    ``>= 0``, else ``default``."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def format_duration(seconds: float) -> str:
    """``seconds`` as ``42s``, ``3m07s`` or ``2h05m``."""
    if not math.isfinite(seconds):
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class LogProgress:
    """tqdm's interface as periodic lines on a stream (see the module docstring).

    Attributes:
        n: units done so far (``initial`` included).
        total: units expected, or None when unknown.
        lines: how many lines were written.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        initial: float = 0,
        leave: bool = True,
        items_per_unit: float | None = None,
        item_unit: str = "img",
        stream: IO[str] | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = self.initial = initial
        self.leave = leave
        self.items_per_unit = items_per_unit
        self.item_unit = item_unit
        self.stream = stream
        self.interval = log_interval() if interval is None else interval
        self.clock = clock
        self.started = self.last = clock()
        self.logged_n = initial
        self.postfix = ""
        self.lines = 0
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LogProgress made without an iterable cannot be iterated")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units; write a line when the interval has passed."""
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.write(now)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **values: Any) -> None:
        """Values shown after the count in the next line (e.g. ``loss=...``)."""
        merged = {**(ordered_dict or {}), **values}
        self.postfix = " ".join(f"{key}={value}" for key, value in merged.items())

    def close(self) -> None:
        """Write the final line (for ``leave=True`` when anything was done since the last)."""
        if self.closed:
            return
        self.closed = True
        if self.leave and self.n != self.logged_n:
            self.write(self.clock())

    def line(self, now: float) -> str:
        """The text of a line at time ``now`` (without the timestamp)."""
        elapsed = now - self.started
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else float("nan")
        name = f"{self.desc}: " if self.desc else ""
        if self.total:
            count = f"{self.unit} {self.n:g}/{self.total:g} ({100 * self.n / self.total:.0f}%)"
        else:
            count = f"{self.n:g} {self.unit}"
        parts = [name + count]
        if self.postfix:
            parts.append(self.postfix)
        if math.isfinite(rate):
            speed = f"{rate:.3g} {self.unit}/s"
            if self.items_per_unit:
                speed += f", {rate * self.items_per_unit:.3g} {self.item_unit}/s"
            parts.append(speed)
        timing = f"elapsed {format_duration(elapsed)}"
        if self.total and rate > 0 and self.n < self.total:
            timing += f" | ETA {format_duration((self.total - self.n) / rate)}"
        parts.append(timing)
        return " | ".join(parts)

    def write(self, now: float) -> None:
        """Write one line (with the wall-clock time) and flush the stream."""
        stream = self.stream if self.stream is not None else sys.stderr
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            stream.write(f"{stamp} {self.line(now)}\n")
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop the work
            pass
        self.last = now
        self.logged_n = self.n
        self.lines += 1


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: float = 0,
    disable: bool = False,
    leave: bool = True,
    items_per_unit: float | None = None,
    item_unit: str = "img",
    stream: IO[str] | None = None,
    interval: float | None = None,
) -> Any:
    """A progress display over ``iterable`` (or ``total`` units updated by hand).

    A tqdm bar when ``stream`` (default: ``sys.stderr`` now) is a terminal; otherwise a
    :class:`LogProgress` writing a line every ``interval`` seconds (default
    :func:`log_interval`). ``disable`` gives a tqdm object that shows nothing.

    Args:
        iterable: what to iterate over (None: call ``update``).
        total: units expected (default ``len(iterable)`` when it has one).
        desc: the name shown first.
        unit: what one update counts (``step``, ``tile``, ``img``).
        initial: units already done (a resumed run).
        disable: show nothing.
        leave: keep the bar / write a final line when it closes.
        items_per_unit: images per unit, for an ``img/s`` rate in the log lines (a training
            step's global batch size).
        item_unit: the name of those items.
        stream: where to write.
        interval: seconds between log lines.
    """
    out = sys.stderr if stream is None else stream
    if disable or is_terminal(out):
        return tqdm(
            iterable,
            total=total,
            desc=desc or None,
            unit=unit,
            initial=initial,
            disable=disable,
            leave=leave,
            file=out,
            dynamic_ncols=True,
        )
    return LogProgress(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        leave=leave,
        items_per_unit=items_per_unit,
        item_unit=item_unit,
        stream=out,
        interval=interval,
    )


__all__ = [
    "DEFAULT_INTERVAL",
    "INTERVAL_ENV",
    "LogProgress",
    "format_duration",
    "is_terminal",
    "log_interval",
    "progress_bar",
]
