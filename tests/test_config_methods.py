"""The registry of method sections (``sr``, ``carbon``, ``change``) and its re-export by config."""

from __future__ import annotations

from typing import Literal

import pytest

import terradiff.config as config
from terradiff import config_methods as cm


class ToyConfig(cm.MethodConfig):
    """A toy method's section: one key of its own."""

    method: Literal["toy"] = "toy"
    width: int = 3


def test_config_reexports_the_registry() -> None:
    assert config.MethodConfig is cm.MethodConfig
    assert config.method_config_class is cm.method_config_class
    assert cm.SECTION_TASKS["change"] == "change"
    assert set(cm.registered_method_configs("change")) >= {"ddpm_cd", "supervised_unet"}
    assert cm.default_method("change") == "supervised_unet"  # needs no other run


def test_register_validate_and_forget_a_method() -> None:
    cm.register_method_config("change", "toy", ToyConfig)
    try:
        section = cm.validate_method_section("change", {"method": "toy", "width": 5})
        assert isinstance(section, ToyConfig) and section.width == 5
        with pytest.raises(cm.SectionError) as caught:
            cm.validate_method_section("change", {"method": "toy", "depth": 1})
        assert caught.value.section == "change" and caught.value.config_class is ToyConfig
        with pytest.raises(ValueError, match="Did you mean 'toy'"):
            cm.method_config_class("change", "tyo")
    finally:
        cm.unregister_method_config("change", "toy")
    assert "toy" not in cm.registered_method_configs("change")
    with pytest.raises(ValueError, match="unknown config section 'nope'"):
        cm.register_method_config("nope", "toy", ToyConfig)
    with pytest.raises(ValueError, match="no methods are registered for section 'nope'"):
        cm.default_method("nope")
    with pytest.raises(ValueError, match="must be a mapping"):
        cm.validate_method_section("change", ["toy"])
