"""Every committed experiment config validates (keys, types, ranges, task sections)."""

from __future__ import annotations

from pathlib import Path

import pytest

from terradiff.config_loading import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_validates(path: Path) -> None:
    config = load_config(path)
    assert config.name and config.output_dir
    if config.task == "carbon":
        assert config.data.kind == "paired" and config.carbon is not None
    if config.task == "super_resolution":
        assert config.sr is not None
