"""Progress for people: tqdm on a terminal, periodic log lines on a file or pipe
(:mod:`terradiff.progress`)."""

from __future__ import annotations

import io
import re

import pytest
from tqdm.auto import tqdm

from terradiff.progress import LogProgress, format_duration, log_interval, progress_bar

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_file_gets_periodic_lines_with_loss_rate_and_eta() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = LogProgress(
        total=100,
        desc="train",
        unit="step",
        items_per_unit=16,
        stream=stream,
        interval=30.0,
        clock=clock,
    )
    for step in range(1, 101):
        clock.now += 1.0  # one step per second
        if step % 10 == 0:
            bar.set_postfix(loss=f"{1 / step:.4f}")
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 4  # at 30, 60 and 90 s, then the final line
    assert all(re.match(STAMP + "train: step ", line) for line in lines)
    first = lines[0].split(" ", 2)[2]
    assert first == (
        "train: step 30/100 (30%) | loss=0.0333 | 1 step/s, 16 img/s | elapsed 30s | ETA 1m10s"
    )
    assert lines[-1].endswith(
        "step 100/100 (100%) | loss=0.0100 | 1 step/s, 16 img/s | elapsed 1m40s"
    )
    bar.close()  # closing twice writes nothing more
    assert len(stream.getvalue().splitlines()) == 4


def test_progress_bar_picks_by_stream_and_leave() -> None:
    stream = io.StringIO()
    seen = list(progress_bar(range(5), desc="ddim", stream=stream, interval=0.0, leave=False))
    assert seen == [0, 1, 2, 3, 4]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and lines[-1].split(" ", 2)[2].startswith("ddim: it 5/5 (100%)")
    quiet = io.StringIO()
    with progress_bar(total=3, desc="tiles", unit="tile", stream=quiet) as bar:
        bar.update(3)  # under the interval: only the final line
    assert len(quiet.getvalue().splitlines()) == 1 and "tile 3/3 (100%)" in quiet.getvalue()
    terminal = Terminal()
    bar = progress_bar(total=2, desc="train", stream=terminal)
    assert isinstance(bar, tqdm)
    bar.update(2)
    bar.close()
    assert "\r" in terminal.getvalue()
    off = progress_bar(range(2), disable=True, stream=io.StringIO())
    assert list(off) == [0, 1]


def test_unknown_totals_durations_and_the_interval_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = LogProgress(desc="classes", unit="class", stream=stream, interval=5.0, clock=clock)
    clock.now += 10
    bar.update(2)
    assert stream.getvalue().split(" ", 2)[2] == "classes: 2 class | 0.2 class/s | elapsed 10s\n"
    assert [format_duration(s) for s in (4.4, 187, 7500)] == ["4s", "3m07s", "2h05m"]
    monkeypatch.setenv("TERRADIFF_PROGRESS_INTERVAL", "5")
    assert log_interval() == 5.0 and LogProgress(stream=stream).interval == 5.0
    monkeypatch.setenv("TERRADIFF_PROGRESS_INTERVAL", "soon")
    assert log_interval() == 30.0
