"""The carbon task on real BioMassters chips: splits, bands (each method: test_method_contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from terradiff.carbon.prepare import prepare_biomassters
from terradiff.config import config_from_dict, method_config_class
from terradiff.errors import ConfigError, DataError
from terradiff.tasks.base import build_dataset
from terradiff.tasks.carbon import CarbonTask
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def prepared(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chips")
    prepare_biomassters(shared_data / "biomassters", out)
    return out


def carbon_config(run_dir: Path, root: Path, method: str, **train: Any) -> dict[str, Any]:
    config = tiny_config(run_dir, root, **train)
    config["task"] = "carbon"
    config["data"] = {
        "kind": "paired",
        "root": str(root),
        "image_size": 32,
        "scaling": "none",
        "crops_per_image": 8,
    }
    config["model"]["attention_resolutions"] = []
    config["model"]["dropout"] = 0.0
    small = {
        "vgg_layout": "vgg11",
        "vgg_width": 0.125,
        "vgg_stages": 2,
        "feature_channels": 8,
        "decoder_hidden": 16,
    }
    keys = method_config_class("carbon", method).model_fields
    config["carbon"] = {
        "method": method,
        "train_chips": ["0060c0a5", "288afc34"],
        "test_chips": ["000aa810"],
        **{k: v for k, v in small.items() if k in keys},
    }
    return config


def test_splits_are_disjoint_and_bands_checked(prepared: Path, tmp_path: Path) -> None:
    raw = carbon_config(tmp_path, prepared, "regression")
    raw["carbon"]["test_chips"] = ["0060c0a5"]
    with pytest.raises(ConfigError, match="both train_chips and test_chips"):
        config_from_dict(raw)
    raw = carbon_config(tmp_path, prepared, "regression")
    raw["carbon"]["train_chips"] = ["nope"]
    with pytest.raises(DataError, match=r"lists \['nope'\].*available"):
        CarbonTask(config_from_dict(raw))
    raw = carbon_config(tmp_path, prepared, "regression")
    raw["data"]["kind"] = "folder"
    with pytest.raises(ConfigError, match="paired"):
        config_from_dict(raw)
    task = CarbonTask(config_from_dict(carbon_config(tmp_path, prepared, "regression")))
    assert [p.name for p in task.pairs("train")] == ["0060c0a5", "288afc34"]
    assert task.pairs("val") == []
    with pytest.raises(DataError, match="carbon task"):
        build_dataset(task.config)
    with pytest.raises(DataError, match="10-band"):
        task.estimate(task.net, torch.zeros(1, 4, 32, 32))
