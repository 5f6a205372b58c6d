"""The check between epochs of a training run: health on held-out images, and kNN when labelled."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from model.embedding.embed import embed_tensor
from model.evaluation.evaluate import knn_accuracy
from model.evaluation.health import health
from model.training.augment import SimCLRAugment
from model.training.config import RunConfig
from model.training.feed import EvalSet
from model.training.simclr import SimCLRModel, set_train_mode


@torch.no_grad()
def evaluate_epoch(
    model: SimCLRModel, cfg: RunConfig, evalset: EvalSet, device: torch.device, epoch: int, force_knn: bool = False
) -> dict[str, Any]:
    """Health on the held-out sample and, every knn_every epochs (and with force_knn), kNN top-1."""
    model.eval()
    mean, std = cfg.encoder.mean, cfg.encoder.std
    sample = evalset.heldout[: min(cfg.train.health_sample, cfg.train.health_eval)]
    h = embed_tensor(model.backbone, sample, mean, std, device=device)
    # Fixed-seed views so that alignment is comparable from epoch to epoch.
    aug = SimCLRAugment(cfg.augment, mean, std)
    gen = torch.Generator(device=device).manual_seed(12345)
    v1, v2 = aug(sample.to(device), gen, size=cfg.encoder.image_size)
    h1 = F.normalize(model.backbone(v1).float(), dim=1).cpu()
    h2 = F.normalize(model.backbone(v2).float(), dim=1).cpu()
    row: dict[str, Any] = health(h, h1, h2)
    t = cfg.train
    knn_due = t.knn_every > 0 and (force_knn or (epoch + 1) % t.knn_every == 0)
    if evalset.bank is not None and evalset.bank_labels is not None and knn_due:
        bank = embed_tensor(model.backbone, evalset.bank, mean, std, device=device)
        queries = embed_tensor(model.backbone, evalset.heldout, mean, std, device=device)
        row["knn_top1"] = knn_accuracy(bank, evalset.bank_labels, queries, evalset.heldout_labels, k=t.knn_k)
    set_train_mode(model, cfg.train.freeze_bn)
    return row
