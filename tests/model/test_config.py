"""Configuration (model.config): presets come from one registry, closed sets are checked."""

from __future__ import annotations

import pytest

from model.config import ARCHS, EncoderConfig, RunConfig, TrainConfig, override
from model.presets import PRESETS, preset


def test_every_registered_preset_builds_and_round_trips() -> None:
    assert list(PRESETS) == ["cpu-small", "resnet18", "resnet50", "pretrained-lite0"]
    for name in PRESETS:
        cfg = preset(name)
        assert cfg.preset == name and RunConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.encoder.arch in ARCHS
    assert preset("resnet50").encoder.arch == "resnet50"
    a, b = preset("cpu-small"), preset("cpu-small")
    a.train.lr = 99.0
    assert b.train.lr != 99.0  # each call is a fresh copy
    with pytest.raises(ValueError, match="choose one of cpu-small, resnet18"):
        preset("resnet9000")


def test_values_outside_a_closed_set_are_refused() -> None:
    with pytest.raises(ValueError, match="arch"):
        EncoderConfig(arch="vit")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TrainConfig(optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown config key"):
        override(preset("cpu-small"), **{"train.nonsense": 1})
