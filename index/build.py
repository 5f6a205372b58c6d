"""`latent-search index build`: embed a collection with f and publish it as an index version.

Collect (read records, decode on threads, drop byte-identical duplicates, keep the bytes in
the image store) -> embed (the encoder runtime's `embed_pixels`; data-parallel under torchrun)
-> index.pipeline.stage_version -> publish.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from index.catalog import Catalog, NewImage
from index.folder import remember_files, scan
from index.images import ImageStore
from index.pipeline import BuildOptions, stage_version
from index.versions import CATALOG_FILE, publish, staging_dir
from model.collections.data import ImageRecord, count_records, iter_records
from model.common.hardware import cores_per_process
from model.common.processes import DistInfo
from model.common.processes import current as current_process
from model.embedding.images import SkipCount, decode_chunks, decode_image
from model.embedding.runtime import EncoderRuntime, manifest_entry

LOG = logging.getLogger(__name__)


@dataclass
class CollectedImage:
    pixels: np.ndarray  # (S, S, 3) uint8
    meta: NewImage  # its catalog row
    data: bytes
    position: int  # the record's place in the collection's order


def collect(record: ImageRecord, size: int, position: int = 0) -> CollectedImage:
    """Decode one record for the index (opened once): pixels for f, and its catalog row."""
    decoded = decode_image(record.data, size)
    sha = hashlib.sha256(record.data).hexdigest()
    meta = NewImage(record.uri, sha, decoded.width, decoded.height, record.label)
    return CollectedImage(decoded.pixels, meta, record.data, position)


@dataclass
class BuildReport:
    root: Path
    version: str
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class EmbeddedPart:
    """The embedded images of one process's share, in collection order."""

    positions: np.ndarray  # (n,) int64
    vectors: np.ndarray  # (n, d) float32
    rows: list[NewImage]
    skipped: int
    copies: list[tuple[str, str]]  # (sha256, uri) of byte-identical duplicates dropped

    @property
    def duplicates(self) -> int:
        return len(self.copies)


def _embed_part(
    encoder: EncoderRuntime,
    data: str | Path,
    batch_size: int,
    workers: int,
    bar: tqdm[Any],
    store: ImageStore | None,
    shard: DistInfo,
) -> EmbeddedPart:
    skips = SkipCount()
    seen_sha: set[str] = set()
    copies: list[tuple[str, str]] = []
    positions: list[int] = []
    vectors: list[np.ndarray] = []
    rows: list[NewImage] = []
    mine: Iterator[tuple[int, ImageRecord]] = (
        (i, r) for i, r in enumerate(iter_records(data)) if i % shard.world_size == shard.rank
    )
    skipped_so_far = 0
    chunks = decode_chunks(
        mine,
        lambda item: collect(item[1], encoder.image_size, item[0]),
        workers=workers,
        chunk_size=batch_size,
        name=lambda item: item[1].uri,
        skips=skips,
    )
    for chunk in chunks:
        fresh = []
        for _, item in chunk:
            if item.meta.sha256 in seen_sha:
                copies.append((item.meta.sha256, item.meta.uri))
                continue
            seen_sha.add(item.meta.sha256)
            fresh.append(item)
            if store is not None:
                store.put(item.data)
        if fresh:
            vectors.append(encoder.embed_pixels(np.stack([f.pixels for f in fresh])))
            rows.extend(f.meta for f in fresh)
            positions.extend(f.position for f in fresh)
        # Records consumed, counted for every process from rank 0's share.
        bar.update((len(chunk) + skips.skipped - skipped_so_far) * shard.world_size)
        skipped_so_far = skips.skipped
    return EmbeddedPart(
        np.array(positions, dtype=np.int64),
        np.concatenate(vectors).astype(np.float32) if vectors else np.empty((0, encoder.feature_dim), np.float32),
        rows,
        skips.skipped,
        copies,
    )


def merge_parts(parts: list[EmbeddedPart]) -> EmbeddedPart:
    """The processes' shares back in collection order; an image in several shares is kept once."""
    positions = np.concatenate([p.positions for p in parts])
    vectors = np.concatenate([p.vectors for p in parts])
    rows = [row for p in parts for row in p.rows]
    keep: list[int] = []
    seen: set[str] = set()
    copies = [c for p in parts for c in p.copies]
    for i in np.argsort(positions, kind="stable"):
        if rows[i].sha256 not in seen:
            seen.add(rows[i].sha256)
            keep.append(int(i))
        else:
            copies.append((rows[i].sha256, rows[i].uri))
    return EmbeddedPart(positions[keep], vectors[keep], [rows[i] for i in keep], sum(p.skipped for p in parts), copies)


def embed_collection(
    encoder: EncoderRuntime,
    data: str | Path,
    batch_size: int = 256,
    workers: int | None = None,
    progress: bool = True,
    store: ImageStore | None = None,
) -> tuple[EmbeddedPart, dict[str, int]] | None:
    """Every readable, distinct image of a collection, embedded (vectors, catalog rows, the
    uris of byte-identical copies), and stats.

    With `store`, each image's bytes are also kept in the content-addressed image store. Under
    torchrun (model.training.distributed) each process decodes and embeds every world_size-th image and
    rank 0 gathers the shares back into collection order; the other ranks get None.
    """
    shard = current_process()
    total = count_records(data)
    bar = tqdm(total=total, desc="embed", unit="img", dynamic_ncols=True, disable=not (progress and shard.is_main))
    part = _embed_part(encoder, data, batch_size, workers or cores_per_process(), bar, store, shard)
    bar.close()
    if shard.enabled:
        gathered: list[EmbeddedPart] | None = [part] * shard.world_size if shard.is_main else None
        torch.distributed.gather_object(part, gathered, dst=0)
        if gathered is None:
            return None
        part = merge_parts(gathered)
    stats = {"seen": total, "skipped": part.skipped, "duplicates": part.duplicates}
    if part.duplicates:
        LOG.info("%d byte-identical duplicate(s) kept once, their other uris recorded as copies", part.duplicates)
    if stats["skipped"]:
        LOG.warning("skipped %d unreadable image(s)", stats["skipped"])
    if not part.rows:
        raise ValueError(f"no readable images in {str(data)!r}")
    return part, stats


def build_index(
    encoder: EncoderRuntime,
    data: str | Path,
    out: str | Path,
    *,
    options: BuildOptions | None = None,
    batch_size: int = 256,
    progress: bool = True,
    image_store: str | Path | None = None,
) -> BuildReport | None:
    """Embed `data` with `encoder` and publish a new version under `out`.

    Under torchrun the embedding is data-parallel; rank 0 builds, publishes and returns the
    report, the other processes return None once their share is handed over.

    Image bytes go to `image_store` (default OUT/images) so the service can return them.
    """
    started = time.perf_counter()
    # A folder's file times before reading it: what `index sync` needs to skip unchanged files.
    folder_files = scan(data)[0] if Path(data).is_dir() and current_process().is_main else None
    store = ImageStore(image_store or Path(out) / "images")
    embedded = embed_collection(encoder, data, batch_size, progress=progress, store=store)
    if embedded is None:  # another process than rank 0 under torchrun: its share is handed over
        return None
    part, stats = embedded
    vectors = part.vectors
    embed_seconds = time.perf_counter() - started
    staged = staging_dir(out)
    try:
        with Catalog(staged / CATALOG_FILE) as catalog:
            ids = np.array([i for i, _ in catalog.add(part.rows)], dtype=np.int64)
            catalog.add_copies(part.copies)
        built, manifest = stage_version(
            staged,
            vectors,
            ids,
            manifest_entry(encoder),
            options or BuildOptions(),
            data=str(data),
            images_seen=stats["seen"],
            skipped_unreadable=stats["skipped"],
            duplicates=stats["duplicates"],
            seconds={"embed": round(embed_seconds, 2)},
        )
        version = publish(out, staged)
        built.publish()  # Milvus: the alias moves to the new collection
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if folder_files is not None:
        sha_of = {row.uri: row.sha256 for row in part.rows} | {uri: sha for sha, uri in part.copies}
        remember_files(out, data, folder_files, sha_of)
    return BuildReport(Path(out), version, manifest.to_dict())
