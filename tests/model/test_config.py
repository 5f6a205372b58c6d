"""Configuration (model.training.config): presets come from one registry, closed sets are checked."""

from __future__ import annotations

import pytest

from model.embedding.spec import ARCHS, EncoderConfig
from model.training.config import RunConfig, TrainConfig, override, parse_sets
from model.training.presets import PRESETS, preset


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


def test_set_overrides_are_typed_by_the_config() -> None:
    cfg = preset("pretrained-lite0")
    values = parse_sets(
        cfg, ["train.distill=1.5", "augment.crop_scale=0.3,1", "train.amp=false", "train.batch_size=32"]
    )
    assert values == {
        "train.distill": 1.5,
        "augment.crop_scale": (0.3, 1.0),
        "train.amp": False,
        "train.batch_size": 32,
    }
    out = override(cfg, **values)
    assert out.train.distill == 1.5 and out.augment.crop_scale == (0.3, 1.0) and out.train.batch_size == 32


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.nope=1", "unknown key 'train.nope'"),
        ("model.lr=1", "unknown key 'model.lr'"),
        ("lr=0.1", "section.name=value"),
        ("train.lr", "section.name=value"),
        ("train.lr=fast", "expected a float"),
        ("train.batch_size=2.5", "expected a int"),
        ("train.freeze_bn=maybe", "expected a true/false"),
    ],
)
def test_set_refuses_unknown_keys_and_bad_values(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sets(preset("pretrained-lite0"), [item])


def test_a_set_value_out_of_range_is_refused_by_the_config() -> None:
    cfg = preset("cpu-small")
    with pytest.raises(ValueError, match="distill"):
        override(cfg, **parse_sets(cfg, ["train.distill=-1"]))
