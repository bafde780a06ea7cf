"""scripts/sr_detail_study.py (and sr_ensemble_study's --refresh): rows read per method, seeds
summarised, scene-paired differences, the refusal of rows without the spectral measures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from scripts import sr_detail_study as study
from scripts import sr_ensemble_study as ensemble
from scripts.seed_study import REPLICATES, seed_zero_row


def _with_detail(per_image: dict[str, Any], detail: float) -> dict[str, Any]:
    n = len(per_image["psnr"])
    return {
        **per_image,
        "hf_power_db": [detail + 0.1 * (i % 3) for i in range(n)],
        "lsd_hf_db": [abs(detail) + 1.0] * n,
    }


def _regression_row(seed: int) -> dict[str, Any]:
    row = copy.deepcopy(seed_zero_row(REPLICATES["regression"]))
    row["per_image"]["model"] = _with_detail(row["per_image"]["model"], -9.0 - 0.1 * seed)
    row["per_image"]["bicubic"] = _with_detail(row["per_image"]["bicubic"], -18.0)
    return row


def _ensemble_record(key: str, seed: int, spectral: bool = True) -> dict[str, Any]:
    """A row on the regression row's scenes: draw 1 at -3 dB of detail, the mean of 8 at -7."""
    base = seed_zero_row(REPLICATES["regression"])
    row = {"per_image": copy.deepcopy(base["per_image"]), "ensemble_curve": {}}
    for size, detail, gain in (("1", -3.0, -2.0), ("8", -7.0, -0.5)):
        psnr = [v + gain for v in base["per_image"]["model"]["psnr"]]
        per_image = {**base["per_image"]["model"], "psnr": psnr}
        if spectral:
            per_image = _with_detail(per_image, detail + 0.05 * seed)
        row["ensemble_curve"][size] = {"model": dict(per_image), "per_image": per_image}
    return {"key": key, "seed": seed, "row": row, "machine": "test machine"}


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_the_report_reads_every_method_over_seeds_and_scenes(tmp_path: Path) -> None:
    out, rows = tmp_path / "detail", tmp_path / "ensemble"
    for seed in (0, 1, 2):
        _write(study.regression_path(out, seed), {"row": _regression_row(seed), "machine": "m"})
        _write(ensemble.row_path(rows, "sr3", seed), _ensemble_record("sr3", seed))
    _write(ensemble.row_path(rows, "implicit", 0), _ensemble_record("implicit", 0))
    results = study.write_report(out, rows)
    summary = results["summary"]
    assert set(summary) == {
        "regression UNet",
        "bicubic",
        "SR3, 1 draw",
        "SR3, mean of 8",
        "implicit, 1 draw",
        "implicit, mean of 8",
    }
    assert summary["SR3, 1 draw"]["seeds"] == [0, 1, 2]
    detail = summary["SR3, 1 draw"]["hf_power_db"]["over_seeds"]
    assert detail["n"] == 3 and detail["mean"] == pytest.approx(-3.0 + 0.05 + 0.1 * 31 / 32, 1e-6)
    assert summary["bicubic"]["seeds"] == [0]
    pair = results["seed0_differences"]["SR3, 1 draw - regression UNet"]["hf_power_db"]
    assert pair["mean"] == pytest.approx(6.0) and pair["low"] > 0
    text = (out / "README.md").read_text()
    assert "| SR3, mean of 8 | 0, 1, 2 |" in text and "(one run)" in text  # implicit: seed 0 only
    assert (out / "plane.png").stat().st_size > 10_000
    assert "spectra.png" not in text  # not measured yet

    frequencies = [(i + 0.5) / 144 for i in range(68)]
    spectra = {
        m: [10.0 / (1 + 50 * f) ** k for f in frequencies] for m, k in (("HR", 2), ("bicubic", 6))
    }
    study.spectra_path(out).write_text(json.dumps({"frequencies": frequencies, "spectra": spectra}))
    study.write_report(out, rows)
    assert "![Mean radial power spectra](spectra.png)" in (out / "README.md").read_text()
    assert (out / "spectra.png").stat().st_size > 10_000


def test_rows_without_the_spectral_measures_are_refused_with_the_fix(tmp_path: Path) -> None:
    out, rows = tmp_path / "detail", tmp_path / "ensemble"
    _write(study.regression_path(out, 0), {"row": _regression_row(0), "machine": "m"})
    _write(ensemble.row_path(rows, "sr3", 0), _ensemble_record("sr3", 0, spectral=False))
    with pytest.raises(RuntimeError, match="--refresh --models sr3 --seeds 0"):
        study.write_report(out, rows)


def test_the_regression_run_is_compared_with_its_committed_row() -> None:
    row = _regression_row(0)
    assert study.regression_reproduction(row, 0)["max_abs_psnr_difference"] == 0.0
    row["per_image"]["model"]["psnr"] = [v + 0.2 for v in row["per_image"]["model"]["psnr"]]
    assert study.regression_reproduction(row, 0)["mean_psnr_difference"] == pytest.approx(0.2)
    row["per_image"]["image"] = list(reversed(row["per_image"]["image"]))
    with pytest.raises(RuntimeError, match="not the test scenes"):
        study.regression_reproduction(row, 0)


def test_a_refreshed_ensemble_row_must_hold_the_same_draws() -> None:
    old = _ensemble_record("sr3", 0, spectral=False)
    new = _ensemble_record("sr3", 0)
    assert not ensemble.has_spectral_measures(old) and ensemble.has_spectral_measures(new)
    ensemble.same_draws(old["row"], new["row"], "sr3", 0)  # the same PSNRs: accepted
    new["row"]["ensemble_curve"]["8"]["per_image"]["psnr"][3] += 0.01
    with pytest.raises(RuntimeError, match="mean of 8 differs"):
        ensemble.same_draws(old["row"], new["row"], "sr3", 0)


def test_block_grid_share_finds_an_8_px_grid_and_not_noise() -> None:
    import torch

    noise = torch.randn(4, 3, 144, 144, generator=torch.Generator().manual_seed(0))
    plain = study.block_grid_share(noise, 8)
    assert plain["power_share"] == pytest.approx(plain["bin_share"], abs=0.02)
    assert 0.2 < plain["bin_share"] < 0.35  # 3 bins per line, 4 lines a side, both axes
    gridded = noise.clone()
    gridded[..., ::8] += 3.0  # a block edge every 8 columns
    assert study.block_grid_share(gridded, 8)["power_share"] > plain["bin_share"] + 0.3
    assert study.block_grid_share(gridded, 16)["period"] == 16
