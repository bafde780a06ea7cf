"""``terradiff.lr_schedule``: linear warm-up, then half-cosine decay to the floor."""

from __future__ import annotations

import itertools
import math

from terradiff.lr_schedule import cosine_warmup_lambda


def test_warm_up_then_cosine_to_the_floor() -> None:
    factor = cosine_warmup_lambda(4, 104, min_ratio=0.1)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0 and math.isclose(factor(54), 0.55)  # half-way: the mean of 1 and 0.1
    decay = [factor(s) for s in range(4, 105)]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert math.isclose(factor(104), 0.1) and factor(500) == factor(104)  # held past the end
    assert cosine_warmup_lambda(0, 10)(0) == 1.0  # no warm-up
