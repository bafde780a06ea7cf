"""scripts/feature_distance_study.py: the degradations on real AID crops, the report's rows,
differences and their direction, and the refusal of a missing run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from scripts import feature_distance_study as study

METRIC = study.METRIC


@pytest.fixture(scope="module")
def crops(sample_data: Path) -> torch.Tensor:
    paths = sorted((sample_data / "aid" / "Forest").glob("*.jpg"))[:2]
    paths += sorted((sample_data / "aid" / "DenseResidential").glob("*.jpg"))[:2]
    arrays = [np.array(Image.open(p).convert("RGB"))[:64, :64] for p in paths]
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1 for a in arrays])


def test_degradations_of_real_scenes(crops: torch.Tensor) -> None:
    from terradiff.metrics.pixel import psnr

    found = study.degradations(crops)
    assert set(found) == {
        "blur_0.5",
        "blur_1",
        "blur_2",
        "noise_matched",
        "bicubic_x2",
        "bicubic_x4",
        "shift_1px",
    }
    for _, degraded, reference in found.values():
        assert degraded.shape == reference.shape
    blur, noise = found["blur_1"], found["noise_matched"]
    torch.testing.assert_close(
        psnr(blur[1], blur[2], reduction="none"), psnr(noise[1], noise[2], reduction="none")
    )
    assert found["shift_1px"][1].shape[-1] == crops.shape[-1] - 1
    # more blur, less PSNR
    psnrs = [float(psnr(found[f"blur_{s:g}"][1], crops)) for s in study.BLUR_SIGMAS]
    assert psnrs[0] > psnrs[1] > psnrs[2]


def _values(n: int, psnr: float, distance: float, power: float) -> dict[str, list[float]]:
    return {
        "psnr": [psnr + 0.1 * i for i in range(n)],
        METRIC: [distance + 0.01 * (i % 4) for i in range(n)],
        "hf_power_db": [power] * n,
    }


def _row(n: int, model: dict[str, list[float]], curve: dict[str, Any] | None = None) -> dict:
    row: dict[str, Any] = {"per_image": {"model": model, "bicubic": _values(n, 23.0, 3.4, -18.0)}}
    if curve is not None:
        row["ensemble_curve"] = curve
    return row


def _write(out: Path, key: str, seed: int, row: dict[str, Any]) -> None:
    path = study.row_path(out, key, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "seed": seed, "row": row}))


def test_report_rows_differences_and_their_direction(tmp_path: Path) -> None:
    n = 8
    out = tmp_path / "report"
    degradations = {
        key: {
            "label": key.replace("_", " "),
            "psnr": [25.0] * n,
            METRIC: [d + 0.1 * i for i in range(n)],
        }
        for key, d in (
            ("blur_0.5", 0.3),
            ("blur_1", 1.8),
            ("blur_2", 3.5),
            ("noise_matched", 1.3),
            ("bicubic_x2", 1.4),
            ("bicubic_x4", 3.4),
            ("shift_1px", 1.4),
        )
    }
    out.mkdir()
    (out / "degradations.json").write_text(
        json.dumps({"images": [f"s{i}.jpg" for i in range(n)], "rows": degradations})
    )
    for seed in study.SEEDS:
        _write(out, "regression", seed, _row(n, _values(n, 24.0, 2.9 + 0.01 * seed, -9.0)))
        one = _values(n, 21.7, 1.9 + 0.01 * seed, -2.0)
        curve = {"1": {"per_image": one}, "4": {"per_image": _values(n, 22.9, 2.6, -6.0)}}
        _write(out, "sr3", seed, _row(n, one, curve if seed == 0 else None))
    study.write_report(out)
    text = (out / "README.md").read_text()
    assert "| bicubic | 3 | 23.35 ± 0.00 | 3.415 ± 0.00" in text.replace("0.000", "0.00")
    assert "| SR3, validation choice | 3 |" in text
    # SR3's one draw is 1.5 closer than bicubic and 1.0 closer than the regression UNet (here)
    assert "SR3, validation choice (one draw) minus bicubic: seeds -1.500, -1.490, -1.480" in text
    assert "SR3, validation choice is better" in text
    assert "SR3, validation choice (one draw) minus regression UNet: seeds -1.000" in text
    assert "regression UNet minus bicubic: seeds -0.500, -0.490, -0.480" in text
    assert "mean of 4: PSNR 23.25 dB" in text
    assert "the mean of 4 minus one draw, paired over the scenes: +0.700" in text
    assert "one draw is closer to the reference (the interval is above 0)" in text
    assert "blur 1 minus noise matched" in text and "noise matched is closer to the scene" in text
    assert (out / "plane.png").is_file()


def test_a_missing_run_names_the_study_that_trains_it(monkeypatch: pytest.MonkeyPatch) -> None:
    label, _, evaluation, maker = study.MODELS["sr3"]
    monkeypatch.setitem(study.MODELS, "sr3", (label, "nowhere/seed{seed}", evaluation, maker))
    with pytest.raises(SystemExit, match=r"sr_settings_study\.py --phase test"):
        study.run_folder("sr3", 1)
