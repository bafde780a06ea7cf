"""``terradiff.batching``: the global generators of a step are seeded as ``torch.manual_seed``."""

from __future__ import annotations

import torch
from torch import nn

from terradiff.batching import seed_global_generators, step_seed


def test_seeding_the_step_generators_equals_manual_seed_on_the_cpu() -> None:
    seed = step_seed(3, 17, 0)
    torch.manual_seed(seed)
    expected = nn.functional.dropout(torch.ones(64), 0.5, training=True)
    torch.manual_seed(0)  # something else in between
    torch.rand(5)
    seed_global_generators(seed, torch.device("cpu"))
    got = nn.functional.dropout(torch.ones(64), 0.5, training=True)
    assert torch.equal(got, expected)
    assert torch.default_generator.initial_seed() == seed
