"""Training data feeds: which uint8 images each step sees, on each process.

A feed yields (images uint8 (B, 3, S, S), labels (B,)) batches for an epoch. Under data
parallelism every process draws the same seeded permutation and takes its own slice of each
global batch of B * world_size images, so N processes with batch B see exactly the batches one
process with batch N * B would (tests/model/test_distributed.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from model.collections.data import ImageCollection, count_records, load_collection
from model.common.processes import DistInfo
from model.training.config import RunConfig

LOG = logging.getLogger(__name__)


class CachedFeed:
    """Batches of uint8 images from the in-memory tensor cache; a seeded shuffle per epoch.

    `batch_size` is per process; with `dist` the global batch is batch_size * world_size.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, dist: DistInfo | None = None
    ) -> None:
        self.dist = dist or DistInfo()
        world = self.dist.world_size
        if images.shape[0] < 2 * world:
            raise ValueError(
                f"only {images.shape[0]} training image(s) for {world} process(es): "
                "contrastive learning needs at least 2 per process"
            )
        if images.shape[0] < batch_size * world:
            LOG.warning("only %d training images: using them all as one batch", images.shape[0])
            batch_size = int(images.shape[0]) // world
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.steps_per_epoch = images.shape[0] // (batch_size * world)  # drop the last partial batch

    def to(self, device: torch.device, max_bytes: int) -> CachedFeed:
        """Keep the uint8 cache on an accelerator when it fits: batches are then gathered there,
        with no host work or copy per step (CIFAR-10's 60k images are 184 MB)."""
        if device.type != "cpu" and self.images.numel() <= max_bytes:
            self.images, self.labels = self.images.to(device), self.labels.to(device)
        return self

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.images.shape[0], generator=gen).to(self.images.device)
        b, rank, world = self.batch_size, self.dist.rank, self.dist.world_size
        for i in range(start, self.steps_per_epoch):
            first = i * b * world + rank * b
            idx = perm[first : first + b]
            yield self.images[idx], self.labels[idx]


class StreamFeed:
    """Batches decoded on the fly by DataLoader workers, for collections too big to cache."""

    def __init__(
        self,
        path: str,
        size: int,
        classes: list[str],
        n_images: int,
        batch_size: int,
        seed: int,
        workers: int,
        dist: DistInfo | None = None,
    ) -> None:
        from model.collections.data import StreamingImages

        dist = dist or DistInfo()
        self.dataset = StreamingImages(path, size, classes, seed, shard=(dist.rank, dist.world_size))
        self.loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=batch_size,
            num_workers=workers,
            drop_last=True,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )
        # Each process streams its 1/world_size share; all take the same number of steps.
        self.steps_per_epoch = n_images // (batch_size * dist.world_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Exactly steps_per_epoch batches. A share that runs short (unreadable files are skipped,
        and shares differ by a few images) starts over: every process must take the same number of
        steps, or the others would wait for it in the next collective forever."""
        self.dataset.set_epoch(epoch)
        step = 0
        while step < self.steps_per_epoch:
            produced = False
            for images, labels in self.loader:
                produced = True
                if step >= start:  # resuming mid-epoch replays the same order and skips what was done
                    yield images, labels
                step += 1
                if step >= self.steps_per_epoch:
                    return
            if not produced:
                raise ValueError("no readable images in this process's share of the collection")


@dataclass
class EvalSet:
    """Held-out images for health metrics, and (when labelled) the kNN bank and queries."""

    heldout: torch.Tensor
    heldout_labels: torch.Tensor
    bank: torch.Tensor | None = None
    bank_labels: torch.Tensor | None = None


def prepare_data(
    cfg: RunConfig, data: str, dist: DistInfo | None = None
) -> tuple[CachedFeed | StreamFeed, EvalSet, dict[str, Any]]:
    """Decide cache vs stream, decode, split train / held-out."""
    size, t = cfg.encoder.image_size, cfg.train
    n = count_records(data)
    if n == 0:
        raise ValueError(f"no images (.jpg, .jpeg, .png, .webp) found in {data!r}")
    decoded_bytes = n * 3 * size * size
    info: dict[str, Any] = {"images": n, "decoded_bytes": decoded_bytes}
    gen = torch.Generator().manual_seed(t.seed)
    if decoded_bytes <= t.cache_max_bytes:
        coll = load_collection(data, size)
        train_idx, test_idx = _split(coll, t.health_sample, t.seed)
        batch = fitting_batch(t.batch_size, len(train_idx), dist)
        feed: CachedFeed | StreamFeed = CachedFeed(coll.images[train_idx], coll.labels[train_idx], batch, t.seed, dist)
        info.update(
            mode="cache", skipped=coll.skipped, classes=coll.classes, train=len(train_idx), heldout=len(test_idx)
        )
    else:
        # Streaming: the held-out sample is the first images of the collection's test split
        # (or of the collection); kNN during training needs the cache, `eval` still works.
        coll = load_collection(data, size, limit=max(t.health_sample, 1))
        test_idx = torch.arange(len(coll))
        classes = coll.classes
        batch = fitting_batch(t.batch_size, n, dist)
        feed = StreamFeed(data, size, classes, n, batch, t.seed, t.num_workers, dist)
        info.update(mode="stream", classes=classes, train=n, heldout=len(test_idx))
        train_idx = torch.empty(0, dtype=torch.long)
    health_idx = test_idx[torch.randperm(len(test_idx), generator=gen)[: t.health_sample]]
    evalset = EvalSet(coll.images[health_idx], coll.labels[health_idx])
    labelled_test = test_idx[coll.labels[test_idx] >= 0]
    if t.knn_every > 0 and len(train_idx) > 0 and len(labelled_test) > 0:
        labelled_train = train_idx[coll.labels[train_idx] >= 0]
        bank_idx = labelled_train[torch.randperm(len(labelled_train), generator=gen)[: t.knn_bank]]
        evalset.bank, evalset.bank_labels = coll.images[bank_idx], coll.labels[bank_idx]
        evalset.heldout, evalset.heldout_labels = coll.images[labelled_test], coll.labels[labelled_test]
    info["batch_size"] = batch
    return feed, evalset, info


def fitting_batch(batch_size: int, n_train: int, dist: DistInfo | None) -> int:
    """The configured batch, or a smaller one when a small collection has fewer images than it."""
    world = dist.world_size if dist is not None else 1
    if n_train < 2 * world:
        raise ValueError(f"only {n_train} training images: contrastive training needs at least {2 * world}")
    return min(batch_size, n_train // world)


def _split(coll: ImageCollection, health_sample: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The archive's train/test split if it has one; else hold out a small random sample."""
    train, test = coll.split_indices("train"), coll.split_indices("test")
    if len(train) and len(test):
        return train, test
    fraction = min(0.1, health_sample / max(1, len(coll)))
    return coll.train_test(seed, test_fraction=fraction)
