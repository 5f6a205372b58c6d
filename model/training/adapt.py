"""At the end of a run, choose the encoder a collection gets: what training made, or a pretrained
network as it ships, by the label-free judge (model.evaluation.judge) on the collection's held-out images.

- After an adaptation (EncoderConfig.init): the adapted f against the f it started from.
- After a run from scratch with a rival (TrainConfig.rival): the trained f against the rival as it
  ships, embedding at max(RIVAL_MIN_SIZE, the run's size).
The shipped network is the reference the judge measures neighbourhood agreement against, and
training has to beat it by the judge's margin to be kept. A collection too small to judge keeps
the shipped network. Each network is embedded by ONNX Runtime where its export works (depthwise
convolutions are several times faster there on CPUs), else by torch.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.embedding.embed import embed_tensor
from model.embedding.encoder_file import save_encoder
from model.embedding.pretrained import MissingWeightsError, as_is
from model.embedding.spec import EncoderConfig
from model.evaluation import judge
from model.evaluation.copies import EmbedFn

LOG = logging.getLogger(__name__)

# Smallest side a rival embeds at: small images are upscaled to it. EfficientNet-Lite0 as it
# ships on CIFAR-10 (4,000-image bank, BENCHMARKS.md "Encoder choice"): kNN 57.6 / 68.1 / 70.5 /
# 73.6 / 70.7 % at 64 / 96 / 128 / 160 / 224 px.
RIVAL_MIN_SIZE = 160
MIN_COLLECTION = 500  # images: below this, the judge's sample is too small to trust
MIN_SAMPLE = 100  # held-out images the judge needs at least
SAMPLE = 1000  # held-out images it looks at, at most


@dataclass
class Network:
    """A network in the running."""

    name: str
    backbone: nn.Module
    cfg: EncoderConfig
    dim: int
    shipped: bool


@dataclass
class Choice:
    kept: Network
    others: list[Network]
    record: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.record["message"])


def _embedder(net: Network, workdir: Path, device: torch.device) -> EmbedFn:
    """ONNX Runtime on the CPU when the export works (as the service would run it), else torch."""
    if device.type == "cpu":
        try:
            from model.embedding.onnx_export import export_onnx
            from model.embedding.onnx_runtime import load_onnx_encoder

            path = workdir / f"{net.name}.pt"
            save_encoder(path, net.backbone, net.cfg, net.dim)
            onnx = load_onnx_encoder(export_onnx(path))

            def by_onnx(pixels: torch.Tensor) -> np.ndarray:
                return onnx.embed_pixels(pixels.permute(0, 2, 3, 1).contiguous().numpy())

            return by_onnx
        except Exception as exc:  # torch still works; only slower
            LOG.info("judging %s with torch (ONNX export failed: %s)", net.name, exc)
    backbone = net.backbone.to(device).eval()

    def by_torch(pixels: torch.Tensor) -> np.ndarray:
        return embed_tensor(backbone, pixels, net.cfg.mean, net.cfg.std, device=device).numpy()

    return by_torch


class Judging:
    """The label-free choice, in two halves: the shipped network is measured on the held-out images
    before training (`Judging(...)`), so its cost is known and the time budget leaves room for the
    other half; the trained network after it (`decide`)."""

    def __init__(self, shipped: Network, heldout: torch.Tensor, device: torch.device, collection_size: int) -> None:
        self.shipped, self.device = shipped, device
        self.images = judge.pixels_to_images(heldout[:SAMPLE])
        self.too_small: str | None = None
        if collection_size < MIN_COLLECTION or len(self.images) < MIN_SAMPLE:
            self.too_small = (
                f"the collection has {collection_size} images ({len(self.images)} held out): too few to judge "
                f"neighbourhoods (at least {MIN_COLLECTION}, {MIN_SAMPLE} held out); keeping {shipped.name} as it ships"
            )
            self.seconds = 0.0
            return
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="latent-search-judge-") as tmp:
            self.base, self.reference = judge.measure(
                shipped.name, _embedder(shipped, Path(tmp), device), self.images, shipped.cfg.image_size, None,
                shipped=True,
            )  # fmt: skip
        self.seconds = time.perf_counter() - started

    def predicted_seconds(self, trained: EncoderConfig) -> float:
        """What `decide` will take: the shipped half's measured time, scaled by the pixels the
        trained network embeds (the same count of images, at its side; an upper bound for a
        lighter network)."""
        if self.too_small:
            return 0.0
        return self.seconds * (trained.image_size / self.shipped.cfg.image_size) ** 2

    def decide(self, trained: Network) -> Choice:
        """Judge `trained` against the shipped network measured at the start."""
        shipped = self.shipped
        if self.too_small:
            LOG.warning(self.too_small)
            return Choice(shipped, [trained], {"chosen": shipped.name, "message": self.too_small, "too_small": True})
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="latent-search-judge-") as tmp:
            other, _ = judge.measure(
                trained.name, _embedder(trained, Path(tmp), self.device), self.images, trained.cfg.image_size,
                self.reference, shipped=False,
            )  # fmt: skip
        pick, why = judge.choose([self.base, other])
        record = judge.as_record([self.base, other], pick, why)
        record["sample"] = len(self.images)
        record["seconds"] = round(self.seconds + time.perf_counter() - started, 1)
        kept, lost = (shipped, trained) if pick is self.base else (trained, shipped)
        record["message"] = (
            f"kept {kept.name}: {why[kept.name]}; {lost.name}: {why[lost.name]} "
            f"(label-free judge on {len(self.images)} held-out images, choice.json)"
        )
        LOG.info(record["message"])
        return Choice(kept, [lost], record)


def choose(
    trained: Network, shipped: Network, heldout: torch.Tensor, device: torch.device, collection_size: int
) -> Choice:
    """Judge `trained` against `shipped` on held-out uint8 (N, 3, S, S) images of the collection."""
    return Judging(shipped, heldout, device, collection_size).decide(trained)


def shipped_for(cfg: EncoderConfig, rival: str) -> Network | None:
    """The network a run's result is judged against: the start of an adaptation as it ships, or a
    run from scratch's rival (None: nothing to compare with)."""
    if cfg.init:
        return shipped_start(cfg)
    return shipped_rival(rival, cfg) if rival else None


def shipped_start(cfg: EncoderConfig) -> Network:
    """The network an adaptation started from, as it ships, at the run's input size."""
    backbone, shipped_cfg, dim = as_is(cfg.init, cfg.image_size)
    return Network("pretrained", backbone, shipped_cfg, dim, shipped=True)


def shipped_rival(rival: str, cfg: EncoderConfig) -> Network | None:
    """The rival of a run from scratch, as it ships, or None (with a warning) when it is missing."""
    try:
        backbone, rival_cfg, dim = as_is(rival, max(RIVAL_MIN_SIZE, cfg.image_size))
    except MissingWeightsError as exc:
        LOG.warning("no rival to compare with: %s", exc)
        return None
    return Network(rival, backbone, rival_cfg, dim, shipped=True)
