"""SIGINT and SIGTERM as orderly stops instead of lost work.

``kill``, ``timeout``, batch schedulers and spot/preemptible machines send SIGTERM; Python's
default for it ends the process at once, skipping every ``finally`` (temporary files stay,
training since the last checkpoint is lost). Two modes fix that:

* :func:`raise_on_signals` (the ``terradiff`` command runs every verb inside it): SIGTERM and
  SIGINT raise :class:`SignalReceived` in the main thread, so ``finally`` blocks and the atomic
  writers of :mod:`terradiff.io` remove their temporaries on the way out.
* :func:`deferred_signals` (the Trainer's loop): a signal only records a :class:`StopRequest`;
  the loop finishes its step, saves a checkpoint and then stops. A second signal while a stop is
  pending raises :class:`SignalReceived` at once (the user insists).

Handlers can be installed only from the main thread; elsewhere both context managers do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

HANDLED: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class SignalReceived(BaseException):
    """SIGINT or SIGTERM arrived; a :class:`BaseException` like ``KeyboardInterrupt`` so that
    ``except Exception`` blocks do not swallow it.

    Args:
        signum: the signal number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """``128 + signum``: 130 for SIGINT, 143 for SIGTERM (the shell convention)."""
        return 128 + self.signum


@dataclass
class StopRequest:
    """What :func:`deferred_signals` records: the first signal received, if any."""

    signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


Handler = Callable[[int, FrameType | None], None]


@contextlib.contextmanager
def _handlers(handler: Handler) -> Iterator[bool]:
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}
    try:
        for sig in HANDLED:
            signal.signal(sig, handler)
        yield True
    finally:
        for sig, old in previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default
            # action is the closest (signal.signal refuses None)
            signal.signal(sig, signal.SIG_DFL if old is None else old)


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`SignalReceived` (main thread only)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SignalReceived(signum)

    with _handlers(handler):
        yield


@contextlib.contextmanager
def deferred_signals() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT/SIGTERM only sets the yielded :class:`StopRequest`.

    The caller polls it at safe points (between training steps), saves, and stops. A second
    signal raises :class:`SignalReceived` immediately.
    """
    request = StopRequest()

    def handler(signum: int, frame: FrameType | None) -> None:
        if request:
            raise SignalReceived(signum)
        request.signum = signum

    with _handlers(handler):
        yield request
