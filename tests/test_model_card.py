"""A run folder's model card (``README.md``, :mod:`terradiff.model_card`) and the training log
lines on a non-terminal stderr, from a 2-step `terradiff train` on the bundled AID sample."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from accelerate.state import AcceleratorState

from terradiff.cli import main
from terradiff.run_folder import RUN_ENTRIES
from tests.helpers import tiny_config


def test_a_two_step_run_writes_its_card_and_log_lines(
    sample_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERRADIFF_PROGRESS_INTERVAL", "0")  # a line per step
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path / "run", sample_data, max_steps=2)))
    AcceleratorState._reset_state(reset_partial_state=True)
    argv = ["train", str(config), "--set", "train.progress=true", "--set", "train.save_every=1"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err  # captured stderr is no terminal: lines, not a redrawn bar
    steps = [line for line in err.splitlines() if " train: step " in line]
    assert len(steps) == 2, err
    pattern = (
        r"train: step 2/2 \(100%\) \| loss=\d\.\d{4} lr=\S+ \| ([\d.]+) step/s, ([\d.]+) img/s"
    )
    rates = re.search(pattern, steps[1])
    assert rates is not None, steps[1]
    assert float(rates.group(2)) == pytest.approx(8 * float(rates.group(1)), rel=0.01)  # batch 8
    assert re.search(r"train: step 1/2 \(50%\) \| .* \| ETA \d+s$", steps[0])

    run = tmp_path / "run"
    card = (run / "README.md").read_text()
    assert card.startswith("# tiny: a terradiff generation model")
    assert f"| Data | `{sample_data / 'aid'}`, 32 px images |" in card
    assert "| Bands | red, green, blue (scaling `uint8`) |" in card
    assert "| Budget | 2 steps x 8 images (8 per process x 1) = 16 images seen; wall time " in card
    assert "| Stopped | reached train.max_steps=2 |" in card
    loss = re.search(r"\| Final loss \| ([\d.e-]+) \(mean of the steps logged up to step 2\)", card)
    assert loss is not None and float(loss.group(1)) > 0
    command = f"terradiff train {config} --set train.progress=true --set train.save_every=1"
    assert command in card
    assert "- `checkpoints/step_00000001`\n- `checkpoints/step_00000002` (latest)" in card
    assert "README.md" in RUN_ENTRIES  # --overwrite replaces the card with the run
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # written atomically
