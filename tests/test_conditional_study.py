"""The pure parts of ``scripts/conditional_study.py`` (issue 15, item 5)."""

from __future__ import annotations

from pathlib import Path

from scripts.conditional_study import choose_scale, plot_curve, write_report


def _row(accuracy: float, fid: float, low: float, high: float) -> dict[str, object]:
    return {
        "fid": fid,
        "kid_mean": fid / 100,
        "kid_std": 0.01,
        "conditional_accuracy": accuracy,
        "conditional_accuracy_ci95": [low, high],
    }


def test_the_scale_is_chosen_by_accuracy_then_fid() -> None:
    validation = {"0.0": _row(0.03, 50, 0, 0.1), "3.0": _row(0.7, 80, 0.6, 0.8)}
    assert choose_scale(validation) == "3.0"
    validation["5.0"] = _row(0.7, 70, 0.6, 0.8)  # as accurate, closer to the real images
    assert choose_scale(validation) == "5.0"


def test_report_states_whether_the_target_holds(tmp_path: Path) -> None:
    test = {"0.0": _row(0.03, 50, 0.01, 0.06), "3.0": _row(0.62, 80, 0.55, 0.69)}
    results = {
        "test": test,
        "validation": test,
        "chosen_scale": "3.0",
        "generator": {"steps": 10, "batch_size": 4, "final_loss": 0.1},
        "train_images": 100,
        "image_size": 32,
    }
    plot_curve(results, tmp_path / "fid_vs_accuracy.png")
    write_report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "| 3 (chosen) | 80.0 | 0.800 +- 0.010 | 62.0 [55.0, 69.0] | 62.0 |" in text
    assert "62.0% at s = 3, met by the point estimate only" in text
    assert (tmp_path / "fid_vs_accuracy.png").is_file()
