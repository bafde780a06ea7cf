"""The settings that differ between a checkpoint's config and a resumed run's (config_diff)."""

from __future__ import annotations

from terradiff.config_diff import ARCHITECTURE_SECTIONS, changed_settings


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
