"""Config validation: unknown keys, wrong types and out-of-range values name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from terradiff.config import ExperimentConfig, config_from_dict
from terradiff.config_loading import load_config
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


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [("sample.guidance=.inf", "sample.guidance", "inf"), ("train.lr=.nan", "train.lr", "nan")],
)
def test_numbers_must_be_finite(tmp_path: Path, override: str, key: str, value: str) -> None:
    """YAML's .inf passed ``ge=0`` bounds (a guidance scale of inf sampled NaN images) and .nan
    any bound a field has none of; both are refused with the key named."""
    path = _write(tmp_path, "data: {root: x}\n")
    with pytest.raises(
        ConfigError, match=rf"{key}: Input should be a finite number \(got {value}\)"
    ):
        load_config(path, [override])


def test_yaml_on_and_off_are_read_as_the_words(tmp_path: Path) -> None:
    """YAML 1.1 reads ``compile: on`` as True, which the choice 'auto' | 'on' | 'off' refused
    with "got True"; where the word is a choice it is taken, elsewhere the error says why."""
    path = _write(tmp_path, "data: {root: x}\ntrain: {compile: on}\n")
    config = load_config(path, ["data.device_batches=off", "sample.fast=off"])
    assert (config.train.compile, config.data.device_batches, config.sample.fast) == (
        "on",
        "off",
        "off",
    )
    with pytest.raises(
        ConfigError, match=r"sample\.fast: .*\(got True\)\. YAML reads on/off/yes/no"
    ):
        load_config(path, ["sample.fast=on"])


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


@pytest.mark.parametrize(
    ("model", "image_size", "expected"),
    [
        ({}, 36, r"data\.image_size=36 is not a multiple of 8.*choose data\.image_size=32 or 40"),
        (
            {"channel_mults": [1, 2, 2, 2, 2, 2, 2]},
            32,
            r"multiple of 64.*7 levels.*model\.channel_mults=\[1, 2, 2, 2, 2, 2\]",
        ),
        (
            {"attention_resolutions": [16, 3]},
            64,
            r"model\.attention_resolutions \[3\] match no UNet level.*64, 32, 16, 8 pixels",
        ),
    ],
)
def test_unet_must_fit_the_image_size(model: dict, image_size: int, expected: str) -> None:
    raw = {"data": {"root": "x", "image_size": image_size}, "model": model}
    with pytest.raises(ConfigError, match=expected) as info:
        config_from_dict(raw)
    assert "(got {" not in str(info.value)  # a check across keys does not echo the whole config


def test_unet_checks_skip_methods_with_their_own_network() -> None:
    from typing import ClassVar, Literal

    from terradiff.config import (
        MethodConfig,
        register_method_config,
        unregister_method_config,
    )

    class OwnNetConfig(MethodConfig):
        uses_model_unet: ClassVar[bool] = False
        method: Literal["own_net_toy"] = "own_net_toy"

    raw = {
        "task": "super_resolution",
        "data": {"root": "x", "image_size": 36},
        "sr": {"method": "own_net_toy"},
    }
    register_method_config("sr", "own_net_toy", OwnNetConfig)
    try:
        assert config_from_dict(raw).data.image_size == 36
    finally:
        unregister_method_config("sr", "own_net_toy")
    with pytest.raises(ConfigError, match="not a multiple of 8"):
        config_from_dict({**raw, "sr": {"method": "regression"}})


def test_rgb_bands_are_three_indices_or_one() -> None:
    assert config_from_dict({"data": {"root": "x", "rgb_bands": [3, 2, 1]}}).data.rgb_bands
    for bad in ([0, 1], [-1, 0, 1]):
        with pytest.raises(ConfigError, match=r"data\.rgb_bands: .*3 band indices"):
            config_from_dict({"data": {"root": "x", "rgb_bands": bad}})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"data: {root: x}\nname: \xff\n", r"not UTF-8 text \(byte 0xff on line 2\)"),
        (b"", r"is empty; it needs at least 'data: \{root: FOLDER\}'"),
        (b"- data\n", "holds a list at the top level; it must be a mapping"),
        (b"data: [x\n", r"not valid YAML: expected ',' or '\]'.*\(line 2, column 1\)$"),
    ],
)
def test_unreadable_config_files_are_named(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path, ["output_dir=elsewhere"])
    assert str(info.value).startswith(f"config {path} ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr=[", r"--set 'train\.lr=\[': the value '\[' is not valid YAML"),
        ("train.lr", r"--set 'train\.lr': expected KEY=VALUE"),
        ("=3", r"--set '=3': the key '' has an empty part"),
        ("name.x=3", r"--set 'name\.x=3': 'name' is a value, not a section"),
    ],
)
def test_bad_overrides_name_the_set_item(tmp_path: Path, override: str, expected: str) -> None:
    path = _write(tmp_path, "name: run\ndata: {root: x}\n")
    with pytest.raises(ConfigError, match=expected):
        load_config(path, [override])
