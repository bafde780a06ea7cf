"""``terradiff export-diffusers`` / ``import-diffusers`` on a run folder, end to end.

The run is the tiny UNet of :func:`tests.helpers.tiny_config` (bundled real AID sample) with
random weights. Export needs no diffusers; the comparison with diffusers' forward pass does
(tolerance ``atol = rtol = 1e-5``, float32).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from terradiff.checkpoint import save_checkpoint
from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.tasks import build_task, load_task
from tests.helpers import tiny_config


def random_run(run: Path, sample_data: Path) -> dict[str, torch.Tensor]:
    """A generation run whose EMA weights are random; returns them."""
    raw = tiny_config(run, sample_data)
    raw["diffusion"] = {"num_timesteps": 100, "schedule": "cosine", "prediction": "v"}
    task = build_task(config_from_dict(raw), BandInfo(3, ("red", "green", "blue"), "uint8"))
    generator = torch.Generator().manual_seed(4)
    ema = {
        k: 0.2 * torch.randn(v.shape, generator=generator) for k, v in task.net.state_dict().items()
    }
    save_checkpoint(
        run / "checkpoints" / "step_00000010",
        config=task.checkpoint_config(),
        model_state=task.net.state_dict(),
        ema_state=ema,
    )
    return ema


def test_export_then_import_round_trip(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # neither direction needs diffusers
    ema = random_run(tmp_path / "run", sample_data)
    out = tmp_path / "diffusers"
    assert main(["export-diffusers", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "scheduler_config.json",
        "terradiff.json",
    }
    scheduler = json.loads((out / "scheduler_config.json").read_text())
    assert scheduler["beta_schedule"] == "squaredcos_cap_v2"
    assert scheduler["prediction_type"] == "v_prediction"
    assert json.loads((out / "terradiff.json").read_text())["bands"]["scaling"] == "uint8"

    run2 = tmp_path / "imported"
    argv = ["import-diffusers", str(out), "--out", str(run2), "--bands", "red,green,blue"]
    assert main([*argv, "--scaling", "uint8", "--data-root", str(sample_data / "aid")]) == 0
    task, ckpt = load_task(run2)
    for key, value in task.net.state_dict().items():
        assert torch.equal(value, ema[key]), key
    config = task.config
    assert (config.diffusion.schedule, config.diffusion.prediction) == ("cosine", "v")
    assert config.diffusion.num_timesteps == 100
    assert task.band_info.names == ("red", "green", "blue")
    assert ckpt.config["imported_from"]["unet_config"]["_class_name"] == "UNet2DModel"
    # a second import into the same run folder needs --overwrite
    assert main([*argv]) == 2
    assert main([*argv, "--overwrite"]) == 0


def test_imported_run_samples_and_evaluates(
    tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    random_run(tmp_path / "run", sample_data)
    main(["export-diffusers", str(tmp_path / "run"), "--out", str(tmp_path / "d")])
    main(["import-diffusers", str(tmp_path / "d"), "--out", str(tmp_path / "run2")])
    png = tmp_path / "s.png"
    argv = ["sample", str(tmp_path / "run2"), "--n", "2", "--steps", "2", "--device", "cpu"]
    assert main([*argv, "--out", str(png)]) == 0
    assert png.is_file()
    report = tmp_path / "metrics.json"
    argv = ["evaluate", str(tmp_path / "run2"), "--n", "4", "--steps", "2", "--device", "cpu"]
    assert main([*argv, "--data", str(sample_data / "aid"), "--out", str(report)]) == 0
    assert "fid" in json.loads(report.read_text())
    capsys.readouterr()
    assert main(argv) == 2  # imported without --data-root: evaluate says what to give
    assert "evaluate --data DIR" in capsys.readouterr().err


def test_exported_folder_loads_offline_in_diffusers(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    diffusers = pytest.importorskip(
        "diffusers", reason="diffusers is not installed (pip install 'terradiff[dev]')"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    random_run(tmp_path / "run", sample_data)
    main(["export-diffusers", str(tmp_path / "run"), "--out", str(tmp_path / "d")])
    theirs = diffusers.UNet2DModel.from_pretrained(tmp_path / "d").eval()
    scheduler = diffusers.DDPMScheduler.from_pretrained(tmp_path / "d")
    task, _ = load_task(tmp_path / "run")
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 99])
    with torch.no_grad():
        torch.testing.assert_close(theirs(x, t).sample, task.net(x, t), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(task.schedule.betas.float(), scheduler.betas, rtol=4e-7, atol=0)


def test_import_refuses_what_a_run_cannot_hold(
    tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    random_run(tmp_path / "run", sample_data)
    folder = tmp_path / "d"
    main(["export-diffusers", str(tmp_path / "run"), "--out", str(folder)])
    capsys.readouterr()
    config = json.loads((folder / "config.json").read_text())
    config["time_embedding_type"] = "fourier"
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["import-diffusers", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert "'time_embedding_type' = 'fourier'" in capsys.readouterr().err
    config.update(time_embedding_type="positional", out_channels=1)
    (folder / "config.json").write_text(json.dumps(config))  # a net, not a generation run
    assert main(["import-diffusers", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert "out_channels 1" in capsys.readouterr().err
    scheduler = json.loads((folder / "scheduler_config.json").read_text())
    (folder / "scheduler_config.json").write_text(
        json.dumps({**scheduler, "beta_schedule": "laplace"})
    )
    config["out_channels"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["import-diffusers", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert "'beta_schedule' = 'laplace'" in capsys.readouterr().err
    (folder / "scheduler_config.json").unlink()
    assert main(["import-diffusers", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert "--scheduler" in capsys.readouterr().err
    # export refuses to replace an existing folder without --overwrite
    assert main(["export-diffusers", str(tmp_path / "run"), "--out", str(folder)]) == 2
    assert (
        main(["export-diffusers", str(tmp_path / "run"), "--out", str(folder), "--overwrite"]) == 0
    )
