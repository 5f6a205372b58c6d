"""Image collections: folder trees and tar archives, read in place.

Layout conventions (all optional):
    ROOT/[train|test|val/]<class>/<image>   -> split and label from the path
    ROOT/<image>                            -> no label

Records are decoded by model.images (the one decode path, shared with the service) into
`size` x `size` uint8 squares: held in memory (ImageCollection) or streamed (StreamingImages).
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.collections.layout import IMAGE_SUFFIXES, split_and_label
from model.common.hardware import cores_per_process
from model.embedding.images import SkipCount, UnreadableImageError, decode_chunks, decode_square

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageRecord:
    uri: str  # path relative to the collection root (or archive member name)
    data: bytes
    label: str | None = None
    split: str | None = None


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (name.endswith((".tar", ".tar.gz", ".tgz")))


def check_source(path: str | os.PathLike[str]) -> Path:
    """Resolve a collection path, or raise FileNotFoundError/ValueError saying what is wrong."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"image collection {str(p)!r} does not exist; pass a folder of images or a .tar/.tar.gz archive of one"
        )
    if p.is_file() and not is_archive(p):
        raise ValueError(f"{str(p)!r} is a file but not a .tar/.tar.gz/.tgz archive")
    return p


def iter_records(path: str | os.PathLike[str]) -> Iterator[ImageRecord]:
    """Yield every image file of a folder tree or tar archive, in a stable order."""
    root = check_source(path)
    if root.is_dir():
        for file in sorted(root.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                rel = file.relative_to(root)
                split, label = split_and_label(rel.parts)
                try:
                    data = file.read_bytes()
                except OSError as exc:
                    LOG.warning("cannot read %s: %s", file, exc)
                    continue
                yield ImageRecord(rel.as_posix(), data, label, split)
        return
    # Stream mode ("r|*") reads the archive sequentially: no extraction, no seeking.
    with tarfile.open(root, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            rel_parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
            if not rel_parts or Path(rel_parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            split, label = split_and_label(rel_parts)
            yield ImageRecord("/".join(rel_parts), fh.read(), label, split)


def count_records(path: str | os.PathLike[str]) -> int:
    """Number of image files in a collection (reads a tar's headers, not its images' pixels)."""
    root = check_source(path)
    if root.is_dir():
        return sum(1 for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    with tarfile.open(root, mode="r|*") as tar:
        return sum(1 for m in tar if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class ImageCollection:
    """A decoded collection held in memory as one uint8 tensor (the tensor cache)."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (N,) int64, -1 where unknown
    splits: list[str | None]
    uris: list[str]
    classes: list[str] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def split_indices(self, split: str) -> torch.Tensor:
        return torch.tensor([i for i, s in enumerate(self.splits) if s == split], dtype=torch.long)

    def train_test(self, seed: int = 0, test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the train and held-out parts: the archive's own split when it has one."""
        train, test = self.split_indices("train"), self.split_indices("test")
        if len(test) == 0:
            test = self.split_indices("val")
        if len(train) > 0 and len(test) > 0:
            return train, test
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=gen)
        n_test = max(1, int(len(self) * test_fraction)) if len(self) > 1 else 0
        return perm[n_test:].sort().values, perm[:n_test].sort().values


def _decode_or_none(record: ImageRecord, size: int) -> np.ndarray | None:
    try:
        return decode_square(record.data, size)
    except UnreadableImageError as exc:
        LOG.warning("skipping unreadable image %s: %s", record.uri, exc)
        return None


def load_collection(
    path: str | os.PathLike[str], size: int, workers: int | None = None, limit: int | None = None
) -> ImageCollection:
    """Decode a whole collection once into an `ImageCollection` (unreadable files skipped).

    `workers` decode threads; by default one per core this process may use. With `limit`,
    the first `limit` readable images.
    """
    decoded: list[tuple[ImageRecord, np.ndarray]] = []
    skips = SkipCount()
    for chunk in decode_chunks(
        iter_records(path),
        lambda r: decode_square(r.data, size),
        workers=workers or cores_per_process(),
        chunk_size=512 if limit is None else min(512, limit),
        name=lambda r: r.uri,
        skips=skips,
    ):
        decoded.extend(chunk)
        if limit is not None and len(decoded) >= limit:
            del decoded[limit:]
            break
    if skips.skipped:
        LOG.warning("skipped %d unreadable image(s) in %s", skips.skipped, path)
    if not decoded:
        raise ValueError(f"no readable images found in {str(path)!r}")
    records = [r for r, _ in decoded]
    classes = sorted({r.label for r in records if r.label is not None})
    index = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([index[r.label] if r.label is not None else -1 for r in records], dtype=torch.long)
    stacked = torch.from_numpy(np.stack([a for _, a in decoded])).permute(0, 3, 1, 2).contiguous()
    LOG.info("decoded %d images (%d classes, %d skipped) from %s", len(records), len(classes), skips.skipped, path)
    return ImageCollection(
        stacked, labels, [r.split for r in records], [r.uri for r in records], classes, skips.skipped
    )


class StreamingImages(torch.utils.data.IterableDataset[tuple[torch.Tensor, int]]):
    """Decode on the fly, for collections too large to cache. Processes and workers shard by position.

    Yields (uint8 (3, S, S), label index or -1). The order within an epoch is the source
    order passed through a seeded shuffle buffer, so it is reproducible for a fixed
    number of workers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int,
        classes: list[str],
        seed: int = 0,
        shuffle_buffer: int = 4096,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        super().__init__()
        self.path, self.size, self.seed, self.shuffle_buffer = path, size, seed, shuffle_buffer
        self.shard = shard  # (this process's rank, number of processes)
        self.class_index = {name: i for i, name in enumerate(classes)}
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        rank, world = self.shard
        part, parts = rank * n_workers + worker, world * n_workers
        rng = np.random.default_rng([self.seed, self.epoch, part])
        buffer: list[tuple[torch.Tensor, int]] = []
        for i, record in enumerate(iter_records(self.path)):
            if i % parts != part:
                continue
            arr = _decode_or_none(record, self.size)
            if arr is None:
                continue
            label = self.class_index.get(record.label, -1) if record.label else -1
            buffer.append((torch.from_numpy(arr).permute(2, 0, 1).contiguous(), label))
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        rng.shuffle(buffer)
        yield from buffer
