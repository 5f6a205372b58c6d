"""Keep what training made only where it measures better than a pretrained network as it is.

Judged on the collection's own held-out images by copy retrieval (model.copies: no labels
needed), each network at its own input size:
- `keep_better`: after a run that started from a pretrained network (EncoderConfig.init), the
  adapted f against the f it started from, so adapting never leaves the user worse off.
- `keep_better_than_rival`: after a run from scratch, the trained f against a pretrained
  network as it ships (TrainConfig.rival), so training from scratch is kept where it wins.
A tie keeps the pretrained network: training has to show that it helps.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.config import EncoderConfig
from model.copies import EmbedFn, copy_retrieval
from model.embed import embed_tensor
from model.encoder import build_backbone
from model.pretrained import MissingWeightsError, as_is, load_weights

LOG = logging.getLogger(__name__)

SAMPLE = 300  # held-out images in the gallery; each is queried with every edit up to QUERIES
QUERIES = 150
# Smallest side a rival embeds at: EfficientNet-Lite0 as it ships, on CIFAR-10 upscaled to 96 px,
# gave kNN 72.3 % (eval protocol, 2026-11-26) against 60.8 % for the 12-minute CPU run.
RIVAL_MIN_SIZE = 96


def _embedder(net: nn.Module, cfg: EncoderConfig, device: torch.device) -> EmbedFn:
    def embed(pixels: torch.Tensor) -> np.ndarray:
        return embed_tensor(net, pixels, cfg.mean, cfg.std, device=device).numpy()

    return embed


def keep_better(
    adapted: nn.Module, cfg: EncoderConfig, heldout: torch.Tensor, device: torch.device
) -> tuple[nn.Module, dict[str, Any]]:
    """(the backbone to save, a record of both scores). `heldout`: uint8 (N, 3, S, S) images."""
    originals = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in heldout[:SAMPLE].cpu()]
    adapted.eval()
    scores = {"adapted": copy_retrieval(_embedder(adapted, cfg, device), originals, cfg.image_size, queries=QUERIES)}
    original, _ = build_backbone(cfg)
    load_weights(original, cfg.init)
    original = original.to(device).eval()
    scores["pretrained"] = copy_retrieval(_embedder(original, cfg, device), originals, cfg.image_size, queries=QUERIES)
    kept = "adapted" if scores["adapted"]["overall"] > scores["pretrained"]["overall"] else "pretrained"
    LOG.info(
        "copy retrieval on %d held-out images: adapted %.3f, %s as it was %.3f -> keeping the %s network",
        len(originals),
        scores["adapted"]["overall"],
        cfg.init,
        scores["pretrained"]["overall"],
        kept,
    )
    return (adapted if kept == "adapted" else original), {"kept": kept, "copy_retrieval": scores}


def keep_better_than_rival(
    trained: nn.Module, cfg: EncoderConfig, rival: str, heldout: torch.Tensor, device: torch.device
) -> tuple[nn.Module, EncoderConfig, int | None, dict[str, Any]]:
    """(backbone, its config, its feature size or None for the trained one's, a record).

    The rival embeds at max(RIVAL_MIN_SIZE, the run's image size): small images are upscaled,
    as the index would upscale them.
    """
    originals = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in heldout[:SAMPLE].cpu()]
    trained.eval()
    size = max(RIVAL_MIN_SIZE, cfg.image_size)
    try:
        other, other_cfg, other_dim = as_is(rival, size)
    except MissingWeightsError as exc:
        LOG.warning("no rival to compare with: %s", exc)
        return trained, cfg, None, {"kept": "trained", "rival": rival, "skipped": str(exc)}
    other = other.to(device)
    scores = {
        "trained": copy_retrieval(_embedder(trained, cfg, device), originals, cfg.image_size, queries=QUERIES),
        rival: copy_retrieval(_embedder(other, other_cfg, device), originals, size, queries=QUERIES),
    }
    kept = "trained" if scores["trained"]["overall"] > scores[rival]["overall"] else rival
    LOG.info(
        "copy retrieval on %d held-out images: trained %.3f, %s as it ships (%d px) %.3f -> keeping %s",
        len(originals),
        scores["trained"]["overall"],
        rival,
        size,
        scores[rival]["overall"],
        kept,
    )
    record = {"kept": kept, "rival": rival, "rival_image_size": size, "copy_retrieval": scores}
    if kept == "trained":
        return trained, cfg, None, record
    return other.cpu(), other_cfg, other_dim, record
