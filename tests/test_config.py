"""Config validation: unknown keys, wrong types and out-of-range values name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from terradiff.config import ExperimentConfig, config_from_dict, load_config
from terradiff.errors import ConfigError

MINIMAL = {"data": {"root": "data/samples/aid"}}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults() -> None:
    config = config_from_dict(MINIMAL)
    assert config.train.ema_decay == 0.995
    assert config.diffusion.schedule == "linear"
    assert config.data.image_size == 64


def test_round_trip_through_dict() -> None:
    config = config_from_dict({**MINIMAL, "diffusion": {"schedule": "cosine"}})
    again = ExperimentConfig.model_validate(config.to_dict())
    assert again == config


def test_unknown_key_is_named_with_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, "data: {root: x}\ntrain:\n  max_step: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "train.max_step" in message
    assert "did you mean 'max_steps'" in message
    assert str(path) in message


def test_yaml_1e4_string_for_integer_is_an_error_with_fix(tmp_path: Path) -> None:
    # PyYAML reads 1e4 as the string '1e4' (SR3 issue 69: saves silently never happened).
    path = _write(tmp_path, "data: {root: x}\ntrain:\n  save_every: 1e4\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "train.save_every" in str(info.value)
    assert "10000" in str(info.value)


def test_out_of_range_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"train\.ema_decay"):
        config_from_dict({**MINIMAL, "train": {"ema_decay": 1.5}})


def test_wrong_choice_is_named() -> None:
    with pytest.raises(ConfigError, match=r"diffusion\.schedule"):
        config_from_dict({**MINIMAL, "diffusion": {"schedule": "quadratic"}})


def test_beta_range_checked() -> None:
    with pytest.raises(ConfigError, match="beta_end"):
        config_from_dict({**MINIMAL, "diffusion": {"beta_start": 0.02, "beta_end": 0.01}})


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        config_from_dict({})


def test_group_norm_must_divide_channels() -> None:
    with pytest.raises(ConfigError, match="num_groups"):
        config_from_dict({**MINIMAL, "model": {"base_channels": 48, "num_groups": 32}})


def test_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "data: {root: x}\n")
    config = load_config(path, ["train.max_steps=123", "diffusion.schedule=sigmoid"])
    assert config.train.max_steps == 123
    assert config.diffusion.schedule == "sigmoid"


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "data: [unclosed\n"))


def test_custom_scaling_is_a_mapping_for_the_data_layer() -> None:
    from terradiff.data.transforms import get_scaling

    scaling = {"name": "landsat-dn", "mins": [6000], "maxs": [16000]}
    raw = {"data": {"root": "x", "scaling": scaling}}
    spec = config_from_dict(raw).data.scaling_spec()
    assert spec["mins"] == [6000.0] and spec["clip"] is True
    assert get_scaling(spec).to_unit(np.array([[[11000.0]]]))[0, 0, 0] == 0.5
    assert config_from_dict({"data": {"root": "x"}}).data.scaling_spec() == "uint8"
    with pytest.raises(ConfigError, match="divisor"):
        config_from_dict({"data": {"root": "x", "scaling": {"divisor": 0}}})


def test_compression_settings_are_checked() -> None:
    carbon = {**MINIMAL, "task": "carbon", "data": {"root": "x", "kind": "paired"}}
    with pytest.raises(ConfigError, match=r"needs carbon\.vgg_channels"):
        config_from_dict({**carbon, "carbon": {"kd_vgg": "kd/kd_vgg.safetensors"}})
    with pytest.raises(ConfigError, match="3 lists"):
        config_from_dict({**carbon, "carbon": {"vgg_channels": [[4], [8]]}})
    ok = config_from_dict({**carbon, "carbon": {"vgg_channels": [[4, 4], [8, 8], [6, 6, 6]]}})
    assert ok.carbon is not None and ok.carbon.vgg_channels == [[4, 4], [8, 8], [6, 6, 6]]
    sr = {**MINIMAL, "task": "super_resolution"}
    with pytest.raises(ConfigError, match="power_window must be odd"):
        config_from_dict({**sr, "sr": {"method": "single_step", "power_window": 4}})
    with pytest.raises(ConfigError, match=r"sr\.distill"):
        config_from_dict({**sr, "sr": {"method": "student", "teacher": "t", "distill": "kl"}})
    with pytest.raises(ConfigError, match=r"needs sr\.lpips_weights"):
        config_from_dict({**sr, "sr": {"method": "single_step", "lpips_weight": 0.1}})
    with pytest.raises(ConfigError, match="It is a key of method single_step, not 'sr3'"):
        config_from_dict({**sr, "sr": {"method": "sr3", "adversarial_weight": 0.01}})


def test_method_sections_hold_only_their_methods_keys() -> None:
    carbon = {**MINIMAL, "task": "carbon", "data": {"root": "x", "kind": "paired"}}
    default = config_from_dict(carbon).carbon
    assert default is not None and default.method == "iidm" and hasattr(default, "vgg_layout")
    plain = config_from_dict({**carbon, "carbon": {"method": "regression"}}).carbon
    assert plain is not None and not hasattr(plain, "vgg_layout")
    with pytest.raises(ConfigError) as info:
        config_from_dict({**carbon, "carbon": {"method": "regression", "vgg_layout": "vgg16"}})
    message = str(info.value)
    assert "carbon.vgg_layout: unknown key" in message and "method iidm" in message
    assert "Keys of method 'regression': mask_loss, max_density, method" in message
    with pytest.raises(ConfigError, match="Did you mean 'regression'"):
        config_from_dict({**carbon, "carbon": {"method": "regresion"}})
    with pytest.raises(ConfigError, match=r"carbon\.vae_beta: Input should be greater"):
        config_from_dict({**carbon, "carbon": {"method": "vae", "vae_beta": -1}})
    raw = config_from_dict({**carbon, "carbon": {"method": "vae", "vae_beta": 0.5}}).to_dict()
    assert raw["carbon"] == {**raw["carbon"], "method": "vae", "vae_beta": 0.5}
    assert config_from_dict(raw).to_dict() == raw  # the subclass's keys survive a round trip
