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

KNN_SAMPLE = (2000, 500)  # a budgeted run's kNN between epochs: bank images and queries, at most
# Images embedded per forward pass in a check: on a CPU small batches are faster per image than
# large ones (EfficientNet-Lite0 at 224 px in torch: 45 images/s in batches of 16, 26 in 64;
# bench/embed_rates.py), and the one image's cost a budgeted run times is measured the same way.
CHECK_BATCH = 16


def health_size(cfg: RunConfig, evalset: EvalSet) -> int:
    return min(len(evalset.heldout), cfg.train.health_sample, cfg.train.health_eval)


def knn_sizes(evalset: EvalSet, sample: bool) -> tuple[int, int]:
    """(bank, queries) the kNN check embeds: all of them, or a budgeted run's sample."""
    bank = 0 if evalset.bank is None else len(evalset.bank)
    queries = len(evalset.heldout)
    return (min(bank, KNN_SAMPLE[0]), min(queries, KNN_SAMPLE[1])) if sample else (bank, queries)


def check_images(cfg: RunConfig, evalset: EvalSet, *, knn: bool, sample: bool) -> int:
    """Images a check embeds: the health sample and its two views, and the kNN bank and queries."""
    images = 3 * health_size(cfg, evalset)
    if knn and evalset.bank is not None:
        images += sum(knn_sizes(evalset, sample))
    return images


def spread(n: int, k: int) -> torch.Tensor:
    return torch.linspace(0, n - 1, k).round().long() if k < n else torch.arange(n)


@torch.no_grad()
def evaluate_epoch(
    model: SimCLRModel,
    cfg: RunConfig,
    evalset: EvalSet,
    device: torch.device,
    epoch: int,
    force_knn: bool = False,
    *,
    knn: bool | None = None,
    sample: bool = False,
) -> dict[str, Any]:
    """Health on the held-out sample and kNN top-1: every knn_every epochs (and with force_knn),
    or as `knn` says. With `sample`, kNN over evenly spaced KNN_SAMPLE bank images and queries."""
    model.eval()
    mean, std = cfg.encoder.mean, cfg.encoder.std
    sample_images = evalset.heldout[: health_size(cfg, evalset)]
    batch = CHECK_BATCH if device.type == "cpu" else 512
    h = embed_tensor(model.backbone, sample_images, mean, std, batch_size=batch, device=device)
    # Fixed-seed views so that alignment is comparable from epoch to epoch.
    aug = SimCLRAugment(cfg.augment, mean, std)
    gen = torch.Generator(device=device).manual_seed(12345)
    v1, v2 = aug(sample_images.to(device), gen, size=cfg.encoder.image_size)
    h1 = F.normalize(model.backbone(v1).float(), dim=1).cpu()
    h2 = F.normalize(model.backbone(v2).float(), dim=1).cpu()
    row: dict[str, Any] = health(h, h1, h2)
    t = cfg.train
    if knn is None:
        knn = t.knn_every > 0 and (force_knn or (epoch + 1) % t.knn_every == 0)
    if evalset.bank is not None and evalset.bank_labels is not None and knn:
        n_bank, n_queries = knn_sizes(evalset, sample)
        b, q = spread(len(evalset.bank), n_bank), spread(len(evalset.heldout), n_queries)
        bank = embed_tensor(model.backbone, evalset.bank[b], mean, std, batch_size=batch, device=device)
        queries = embed_tensor(model.backbone, evalset.heldout[q], mean, std, batch_size=batch, device=device)
        row["knn_top1"] = knn_accuracy(bank, evalset.bank_labels[b], queries, evalset.heldout_labels[q], k=t.knn_k)
        if sample:
            row["knn_sample"] = [n_bank, n_queries]
    set_train_mode(model, cfg.train.freeze_bn)
    return row


def seconds_per_image(model: SimCLRModel, cfg: RunConfig, evalset: EvalSet, device: torch.device) -> float:
    """What embedding one held-out image costs at full size (a check's unit of cost), timed."""
    import time

    images = evalset.heldout[: 2 * CHECK_BATCH]
    if not len(images):
        return 0.0
    model.eval()
    batch = CHECK_BATCH if device.type == "cpu" else 512
    embed_tensor(model.backbone, images[:2], cfg.encoder.mean, cfg.encoder.std, device=device)
    started = time.perf_counter()
    embed_tensor(model.backbone, images, cfg.encoder.mean, cfg.encoder.std, batch_size=batch, device=device)
    spent = time.perf_counter() - started
    set_train_mode(model, cfg.train.freeze_bn)
    return spent / len(images)
