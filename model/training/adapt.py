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

from model.embedding.backbones import EncoderConfig
from model.embedding.embed import embed_tensor
from model.embedding.encoder_file import save_encoder
from model.embedding.pretrained import MissingWeightsError, as_is
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


def choose(
    trained: Network, shipped: Network, heldout: torch.Tensor, device: torch.device, collection_size: int
) -> Choice:
    """Judge `trained` against `shipped` on held-out uint8 (N, 3, S, S) images of the collection."""
    images = judge.pixels_to_images(heldout[:SAMPLE])
    small = collection_size < MIN_COLLECTION or len(images) < MIN_SAMPLE
    if small:
        too_small = (
            f"the collection has {collection_size} images ({len(images)} held out): too few to judge "
            f"neighbourhoods (at least {MIN_COLLECTION}, {MIN_SAMPLE} held out); keeping {shipped.name} as it ships"
        )
        LOG.warning(too_small)
        return Choice(shipped, [trained], {"chosen": shipped.name, "message": too_small, "too_small": True})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="latent-search-judge-") as tmp:
        base, ref = judge.measure(
            shipped.name, _embedder(shipped, Path(tmp), device), images, shipped.cfg.image_size, None, shipped=True
        )
        other, _ = judge.measure(
            trained.name, _embedder(trained, Path(tmp), device), images, trained.cfg.image_size, ref, shipped=False
        )
    pick, why = judge.choose([base, other])
    record = judge.as_record([base, other], pick, why)
    record["sample"] = len(images)
    record["seconds"] = round(time.perf_counter() - started, 1)
    kept, lost = (shipped, trained) if pick is base else (trained, shipped)
    record["message"] = (
        f"kept {kept.name}: {why[kept.name]}; {lost.name}: {why[lost.name]} "
        f"(label-free judge on {len(images)} held-out images, choice.json)"
    )
    LOG.info(record["message"])
    return Choice(kept, [lost], record)


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
