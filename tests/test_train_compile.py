"""``train.compile`` in the Trainer: ``graphs`` compiles the whole net, marks every step for the
CUDA graph trees and trains as eager does; it refuses several processes before writing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.state import AcceleratorState

import terradiff.train as train_module
from terradiff.checkpoint import load_checkpoint
from terradiff.config import config_from_dict
from terradiff.errors import ConfigError
from terradiff.nets import compile as net_compile
from terradiff.tasks.generation import GenerationTask
from terradiff.train import Trainer
from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


def test_graphs_trains_like_eager_and_marks_each_step(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dynamo's eager backend (the wiring without inductor, which on a CPU compiles C++ for
    minutes): the whole net goes through ``torch.compile``, each step starts with the marker,
    and the weights after 4 steps equal eager training's, under the eager net's names."""
    plans: list[str] = []
    marks: list[int] = []

    def eager_backend(net: torch.nn.Module, plan: net_compile.CompilePlan):  # type: ignore[no-untyped-def]
        plans.append(plan)
        marker = net_compile.compile_for_training(net, plan, backend="eager")
        assert marker is torch.compiler.cudagraph_mark_step_begin

        def counted() -> None:
            marks.append(1)
            marker()

        return counted

    eager_cfg = config_from_dict(tiny_config(tmp_path / "eager", sample_data, max_steps=4))
    eager = Trainer(GenerationTask(eager_cfg), tmp_path / "eager").fit()
    AcceleratorState._reset_state(reset_partial_state=True)
    monkeypatch.setattr(train_module, "compile_for_training", eager_backend)
    graphs_cfg = config_from_dict(
        tiny_config(tmp_path / "graphs", sample_data, max_steps=4, compile="graphs")
    )
    graphs = Trainer(GenerationTask(graphs_cfg), tmp_path / "graphs").fit()
    assert plans == ["graphs"] and len(marks) == 4
    a, b = load_checkpoint(eager.checkpoint), load_checkpoint(graphs.checkpoint)
    assert list(a.model_state) == list(b.model_state)  # no "_orig_mod." in the names
    for key, value in a.model_state.items():
        torch.testing.assert_close(b.model_state[key], value, atol=1e-6, rtol=1e-5)


def test_graphs_with_several_processes_is_refused_before_writing(
    tmp_path: Path, sample_data: Path
) -> None:
    config = config_from_dict(
        tiny_config(tmp_path / "run", sample_data, max_steps=2, compile="graphs")
    )
    trainer = Trainer(GenerationTask(config), tmp_path / "run")
    trainer.accelerator = SimpleNamespace(num_processes=2)  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"train\.compile=graphs.*2 processes.*compile=on"):
        trainer.fit()
    assert not (tmp_path / "run").exists()
