"""Keep contrastive adaptation only where it helps: adapted f against the pretrained f it started from.

After a run that started from a pretrained network (EncoderConfig.init), both are judged on the
collection's own held-out images by copy retrieval (model.copies: no labels needed); the run's
encoder.pt is the better of the two, so adapting can never leave the user worse off than the
network as it was. A tie keeps the pretrained network: adaptation has to show that it helps.
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
from model.pretrained import load_weights

LOG = logging.getLogger(__name__)

SAMPLE = 300  # held-out images in the gallery; each is queried with every edit up to QUERIES
QUERIES = 150


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
