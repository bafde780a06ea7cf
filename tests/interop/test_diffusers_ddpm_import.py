"""The DDPM reference nets (``google/ddpm-*`` style) import as runs with ``import-diffusers``.

Those ``UNet2DModel`` configs differ from terradiff's defaults in five keys: additive time
conditioning (``resnet_time_scale_shift: default``), ``freq_shift: 1``, ``flip_sin_to_cos:
false``, ``norm_eps: 1e-6`` and ``downsample_padding: 0`` (Ho et al. 2020's TensorFlow code).
A tiny such net with random weights is saved with diffusers' ``save_pretrained``, imported by
the CLI verb, loaded back as a run and compared with diffusers' own forward pass: float32,
``atol = rtol = 1e-5`` (measured ~1e-6: the time embedding and attention are computed in a
different order).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from terradiff.cli import main
from terradiff.config import ModelConfig
from terradiff.tasks import load_task

ATOL = RTOL = 1e-5

#: google/ddpm-cifar10-32's config.json with the widths shrunk (the other keys as there).
DDPM_REFERENCE = {
    "sample_size": 16,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (16, 32, 32),
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "layers_per_block": 1,
    "attention_head_dim": None,
    "norm_num_groups": 8,
    "norm_eps": 1e-6,
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "resnet_time_scale_shift": "default",
}


def diffusers_or_skip():
    return pytest.importorskip(
        "diffusers", reason="diffusers is not installed (pip install 'terradiff[dev]')"
    )


def ddpm_folder(folder: Path, scheduler: str, beta_schedule: str):
    """A DDPM-reference-style diffusers folder with random weights; returns the diffusers net."""
    diffusers = diffusers_or_skip()
    torch.manual_seed(7)
    net = diffusers.UNet2DModel(**DDPM_REFERENCE).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape))
    net.save_pretrained(folder)
    kwargs = {"variance_type": "fixed_large"} if scheduler == "DDPMScheduler" else {}
    getattr(diffusers, scheduler)(
        num_train_timesteps=1000, beta_schedule=beta_schedule, **kwargs
    ).save_pretrained(folder)
    return net


@pytest.mark.parametrize(
    ("scheduler", "beta_schedule"),
    [("DDPMScheduler", "linear"), ("DDIMScheduler", "scaled_linear")],
)
def test_ddpm_reference_net_imports_as_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler: str, beta_schedule: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    theirs = ddpm_folder(tmp_path / "d", scheduler, beta_schedule)
    run = tmp_path / "run"
    assert main(["import-diffusers", str(tmp_path / "d"), "--out", str(run)]) == 0

    model = json.loads((run / "config.json").read_text())["config"]["model"]
    assert model["time_scale_shift"] is False
    assert (model["freq_shift"], model["norm_eps"], model["downsample_padding"]) == (1, 1e-6, 0)
    assert model["mid_attention"] is True
    task, _ = load_task(run)
    assert task.config.diffusion.schedule == beta_schedule
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3, 911])
    with torch.no_grad():
        ours, reference = task.net(x, t), theirs(x, t).sample
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=RTOL)

    png = tmp_path / "s.png"
    argv = ["sample", str(run), "--n", "2", "--steps", "2", "--device", "cpu", "--out", str(png)]
    assert main(argv) == 0
    assert png.is_file()


def test_imported_run_exports_back_to_the_same_diffusers_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    diffusers = diffusers_or_skip()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    theirs = ddpm_folder(tmp_path / "d", "DDPMScheduler", "linear")
    main(["import-diffusers", str(tmp_path / "d"), "--out", str(tmp_path / "run")])
    main(["export-diffusers", str(tmp_path / "run"), "--out", str(tmp_path / "e")])
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    for key in ("norm_eps", "downsample_padding", "freq_shift", "resnet_time_scale_shift"):
        assert config[key] == DDPM_REFERENCE[key], key
    again = diffusers.UNet2DModel.from_pretrained(tmp_path / "e").eval()
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(again(x, t).sample, theirs(x, t).sample, atol=ATOL, rtol=RTOL)


def test_what_a_run_config_cannot_hold_is_refused_by_its_diffusers_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    diffusers = diffusers_or_skip()
    diffusers.UNet2DModel(**{**DDPM_REFERENCE, "attention_head_dim": 4}).save_pretrained(
        tmp_path / "d"
    )
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "d")
    capsys.readouterr()
    assert main(["import-diffusers", str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "'attention_head_dim' = 4" in err and "model.head_channels" in err
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_model_defaults_are_todays_unet() -> None:
    """Absent keys (every existing config and checkpoint) mean the UNet as it was built before."""
    model = ModelConfig()
    assert (model.time_scale_shift, model.freq_shift, model.mid_attention) == (True, 0.0, True)
    assert (model.norm_eps, model.downsample_padding) == (1e-5, 1)
    with pytest.raises(ValueError, match="freq_shift"):
        ModelConfig(base_channels=8, num_groups=8, freq_shift=4)
