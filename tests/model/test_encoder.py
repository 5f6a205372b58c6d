"""Encoder output shapes for every preset and architecture."""

from __future__ import annotations

import pytest
import torch

from model.embedding.spec import EncoderConfig
from model.training.presets import preset
from model.training.simclr import ProjectionHead, SimCLRModel


@pytest.mark.parametrize(("name", "feature_dim"), [("cpu-small", 192), ("resnet18", 512), ("resnet50", 2048)])
def test_preset_shapes(name: str, feature_dim: int) -> None:
    cfg = preset(name)
    model = SimCLRModel(cfg.encoder).eval()
    with torch.no_grad():
        h, z = model(torch.randn(2, 3, cfg.encoder.image_size, cfg.encoder.image_size))
    assert model.feature_dim == feature_dim
    assert h.shape == (2, feature_dim)
    assert z.shape == (2, cfg.encoder.proj_out)


def test_small_cnn_accepts_other_sizes_and_resnet34() -> None:
    model = SimCLRModel(EncoderConfig(arch="small_cnn", width=8)).eval()
    for side in (16, 24, 48):
        h, _ = model(torch.randn(1, 3, side, side))
        assert h.shape == (1, 64)
    r34 = SimCLRModel(EncoderConfig(arch="resnet34", small_stem=False, image_size=64)).eval()
    assert r34(torch.randn(1, 3, 64, 64))[0].shape == (1, 512)


def test_projection_head_layers_and_validation() -> None:
    head = ProjectionHead(10, 7, 3, layers=3)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.modules()) == 3
    assert head(torch.randn(4, 10)).shape == (4, 3)
    with pytest.raises(ValueError):
        ProjectionHead(10, 7, 3, layers=0)
    with pytest.raises(ValueError):
        EncoderConfig(arch="vgg")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        preset("nope")
