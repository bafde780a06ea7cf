"""The settings that differ between a checkpoint's config and a resumed run's (config_diff)."""

from __future__ import annotations

from terradiff.config_diff import ARCHITECTURE_SECTIONS, changed_settings, resume_warnings


def test_changed_settings_lists_nested_leaves_in_the_given_sections_only() -> None:
    saved = {"model": {"base_channels": 32, "mults": [1, 2]}, "train": {"lr": 1e-3}, "sr": {}}
    current = {"model": {"base_channels": 16, "mults": [1, 2]}, "train": {"lr": 1e-4}}
    current["sr"] = {"method": "regression"}
    assert changed_settings(saved, current, ("model", "sr")) == [
        "model.base_channels 32 -> 16",
        "sr.method (unset) -> regression",
    ]
    assert changed_settings(saved, saved, ARCHITECTURE_SECTIONS) == []
    assert changed_settings({"task": "generation"}, {"task": "carbon"}, ("task",)) == [
        "task generation -> carbon"
    ]


def test_dotted_sections_compare_one_setting() -> None:
    saved = {"seed": 0, "train": {"lr": 1e-3, "max_steps": 10, "betas": [0.9, 0.99]}}
    current = {"seed": 0, "train": {"lr": 1e-4, "max_steps": 20, "betas": [0.9, 0.99]}}
    assert changed_settings(saved, current, ("seed", "train.lr", "train.betas")) == [
        "train.lr 0.001 -> 0.0001"
    ]
    assert changed_settings(saved, {"seed": 0}, ("train.lr",)) == ["train.lr 0.001 -> (unset)"]
    assert changed_settings({}, {}, ("train.lr", "data.bands")) == []


def test_resume_warnings_name_what_changes_the_updates_but_not_a_longer_run() -> None:
    saved = {
        "seed": 0,
        "diffusion": {"schedule": "linear"},
        "train": {"lr": 2e-4, "batch_size": 16, "max_steps": 100, "log_every": 10},
        "data": {"root": "data/aid", "image_size": 64, "num_workers": 0},
    }
    longer = {
        **saved,
        "train": {**saved["train"], "max_steps": 500, "log_every": 50},
        "data": {**saved["data"], "root": "/elsewhere/aid", "num_workers": 4},
    }
    assert resume_warnings(saved, longer) == []
    other = {**saved, "seed": 3, "train": {**saved["train"], "batch_size": 32}}
    other["diffusion"] = {"schedule": "cosine"}
    first, second = resume_warnings(saved, other)
    assert (
        first
        == "resuming with other settings than trained so far: diffusion.schedule linear -> cosine"
    )
    assert "(seed 0 -> 3; train.batch_size 16 -> 32)" in second
    assert "no longer makes the updates of an uninterrupted run" in second
