"""Build an index version from a collection: decode, embed with f, choose, tune, publish."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from tqdm import tqdm

from index.catalog import Catalog, NewImage
from index.choose import exact_neighbours, plan_index, tune
from index.images import ImageStore
from index.store import CATALOG_FILE, INDEX_FILE, MANIFEST_FILE, publish, staging_dir
from model.data import ImageRecord, UnreadableImageError, count_records, decode_opened, iter_records, open_image
from model.distributed import DistInfo
from model.distributed import current as current_process
from model.embed import Encoder
from model.hardware import cores_per_process

LOG = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET = 4 * 1024**3
TUNE_QUERIES = 1000


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (S, S, 3) uint8
    meta: NewImage
    data: bytes
    position: int = 0  # the record's place in the collection's order


def describe(record: ImageRecord, size: int) -> DecodedImage:
    """Decode one record for the index (opened once): pixels for f, and its catalog row."""
    img = open_image(record.data)
    width, height = img.size
    pixels = decode_opened(img, size)
    sha = hashlib.sha256(record.data).hexdigest()
    return DecodedImage(pixels, NewImage(record.uri, sha, width, height, record.label), record.data)


def _decoded_batches(
    records: Iterator[tuple[int, ImageRecord]], size: int, batch_size: int, workers: int, stats: dict[str, int]
) -> Iterator[list[DecodedImage]]:
    def one(item: tuple[int, ImageRecord]) -> DecodedImage | None:
        position, record = item
        try:
            decoded = describe(record, size)
        except UnreadableImageError as exc:
            LOG.warning("skipping unreadable image %s: %s", record.uri, exc)
            return None
        decoded.position = position
        return decoded

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        chunk: list[tuple[int, ImageRecord]] = []
        for record in records:
            chunk.append(record)
            if len(chunk) == batch_size:
                yield _keep(pool.map(one, chunk), stats)
                chunk = []
        if chunk:
            yield _keep(pool.map(one, chunk), stats)


def _keep(results: Iterator[DecodedImage | None], stats: dict[str, int]) -> list[DecodedImage]:
    kept = []
    for item in results:
        if item is None:
            stats["skipped"] += 1
        else:
            kept.append(item)
    return kept


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
    duplicates: int


def _embed_part(
    encoder: Encoder,
    data: str | Path,
    batch_size: int,
    workers: int,
    bar: tqdm[Any],
    store: ImageStore | None,
    shard: DistInfo,
) -> EmbeddedPart:
    stats = {"skipped": 0}
    seen_sha: set[str] = set()
    duplicates = 0
    positions: list[int] = []
    vectors: list[np.ndarray] = []
    rows: list[NewImage] = []
    mine = ((i, r) for i, r in enumerate(iter_records(data)) if i % shard.world_size == shard.rank)
    skipped_so_far = 0
    for batch in _decoded_batches(mine, encoder.image_size, batch_size, workers, stats):
        fresh = []
        for item in batch:
            if item.meta.sha256 in seen_sha:
                duplicates += 1
                continue
            seen_sha.add(item.meta.sha256)
            fresh.append(item)
            if store is not None:
                store.put(item.data)
        if fresh:
            pixels = torch.from_numpy(np.stack([f.pixels for f in fresh])).permute(0, 3, 1, 2)
            vectors.append(encoder.embed_uint8(pixels, batch_size))
            rows.extend(f.meta for f in fresh)
            positions.extend(f.position for f in fresh)
        # Records consumed, counted for every process from rank 0's share.
        bar.update((len(batch) + stats["skipped"] - skipped_so_far) * shard.world_size)
        skipped_so_far = stats["skipped"]
    dim = encoder.feature_dim
    return EmbeddedPart(
        np.array(positions, dtype=np.int64),
        np.concatenate(vectors).astype(np.float32) if vectors else np.empty((0, dim), np.float32),
        rows,
        stats["skipped"],
        duplicates,
    )


def merge_parts(parts: list[EmbeddedPart]) -> EmbeddedPart:
    """The processes' shares back in collection order; an image in several shares is kept once."""
    positions = np.concatenate([p.positions for p in parts])
    vectors = np.concatenate([p.vectors for p in parts])
    rows = [row for p in parts for row in p.rows]
    keep: list[int] = []
    seen: set[str] = set()
    for i in np.argsort(positions, kind="stable"):
        if rows[i].sha256 not in seen:
            seen.add(rows[i].sha256)
            keep.append(int(i))
    duplicates = sum(p.duplicates for p in parts) + len(rows) - len(keep)
    return EmbeddedPart(
        positions[keep], vectors[keep], [rows[i] for i in keep], sum(p.skipped for p in parts), duplicates
    )


def embed_collection(
    encoder: Encoder,
    data: str | Path,
    batch_size: int = 256,
    workers: int | None = None,
    progress: bool = True,
    store: ImageStore | None = None,
) -> tuple[np.ndarray, list[NewImage], dict[str, int]] | None:
    """Every readable, distinct image of a collection -> (vectors (N, d), catalog rows, stats).

    With `store`, each image's bytes are also kept in the content-addressed image store. Under
    torchrun (model.distributed) each process decodes and embeds every world_size-th image and
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
    if stats["skipped"]:
        LOG.warning("skipped %d unreadable image(s)", stats["skipped"])
    if not part.rows:
        raise ValueError(f"no readable images in {str(data)!r}")
    return part.vectors, part.rows, stats


def build_faiss(vectors: np.ndarray, ids: np.ndarray, factory: str, seed: int = 0) -> faiss.Index:
    """Train (if needed) and fill an inner-product index with an id map."""
    dim = vectors.shape[1]
    inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not inner.is_trained:
        rng = np.random.default_rng(seed)
        n_train = min(len(vectors), max(50_000, 64 * getattr(faiss.extract_index_ivf(inner), "nlist", 256)))
        sample = vectors[rng.choice(len(vectors), n_train, replace=False)] if n_train < len(vectors) else vectors
        inner.train(sample)
    try:
        faiss.extract_index_ivf(inner)
        # IVF lists store 64-bit ids themselves. An IndexIDMap around them would break on
        # removal (it assumes the inner index renumbers what remains, as a flat index does).
        index = inner
    except RuntimeError:
        index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, ids)
    return index


def tune_index(
    index: faiss.Index,
    vectors: np.ndarray,
    ids: np.ndarray,
    target: float,
    n_queries: int = TUNE_QUERIES,
    seed: int = 0,
) -> dict[str, Any]:
    """Pick the search parameter for `target` recall@10 on a sample of held-out queries.

    Queries are collection vectors whose own id is dropped from both the exact and the
    approximate answers, so each behaves as a query the index does not contain.
    """
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)
    queries, own = vectors[pick], ids[pick]
    k = min(10, len(vectors) - 1)
    if k < 1:
        return {"search_params": {}, "recall_at_10": 1.0, "tuning_queries": 0}
    truth = _drop_own(exact_neighbours(vectors, ids, queries, k + 1), own, k)
    wrapped = _DropOwn(index, own, k)
    name, value, recall = tune(wrapped, queries, truth, target, k)  # type: ignore[arg-type]
    return {
        "search_params": {name: value} if name else {},
        "recall_at_10": round(recall, 4),
        "recall_target": target,
        "tuning_queries": len(pick),
    }


def _drop_own(found: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(found), k), -1, dtype=np.int64)
    for row, (hits, me) in enumerate(zip(found, own, strict=True)):
        kept = [h for h in hits.tolist() if h != me][:k]
        out[row, : len(kept)] = kept
    return out


class _DropOwn:
    """Presents `index` to `tune` with each query's own id removed from its results."""

    def __init__(self, index: faiss.Index, own: np.ndarray, k: int) -> None:
        # Not named `index`: attribute look-ups (e.g. `.index` of an id map) must reach the real index.
        self.wrapped, self.own, self.k = index, own, k

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, found = self.wrapped.search(queries, k + 1)
        return scores, _drop_own(found, self.own, k)


def build_index(
    encoder: Encoder,
    data: str | Path,
    out: str | Path,
    *,
    factory: str | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    target_recall: float = 0.95,
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
    store = ImageStore(image_store or Path(out) / "images")
    embedded = embed_collection(encoder, data, batch_size, progress=progress, store=store)
    if embedded is None:  # another process than rank 0 under torchrun: its share is handed over
        return None
    vectors, rows, stats = embedded
    embed_seconds = time.perf_counter() - started
    staged = staging_dir(out)
    try:
        with Catalog(staged / CATALOG_FILE) as catalog:
            ids = np.array([i for i, _ in catalog.add(rows)], dtype=np.int64)
        return _finish(
            encoder,
            data,
            out,
            staged,
            vectors,
            ids,
            stats,
            factory,
            memory_budget,
            target_recall,
            embed_seconds,
            started,
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _finish(
    encoder: Encoder,
    data: str | Path,
    out: str | Path,
    staged: Path,
    vectors: np.ndarray,
    ids: np.ndarray,
    stats: dict[str, int],
    factory: str | None,
    memory_budget: int,
    target_recall: float,
    embed_seconds: float,
    started: float,
) -> BuildReport:
    plan = plan_index(len(vectors), vectors.shape[1], memory_budget, factory)
    LOG.info("index type %s (%s)", plan.factory, plan.reason)
    t0 = time.perf_counter()
    index = build_faiss(vectors, ids, plan.factory)
    build_seconds = time.perf_counter() - t0
    tuning = tune_index(index, vectors, ids, target_recall)
    faiss.write_index(index, str(staged / INDEX_FILE))
    name = staged.name.removeprefix(".tmp-")
    manifest = {
        "format": "latent-search-index/1",
        "version": name,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(data),
        "encoder": {"path": encoder.path, "sha256": encoder.checksum, "config": encoder.config.__dict__},
        "dim": int(vectors.shape[1]),
        "count": int(index.ntotal),
        "index_type": plan.factory,
        "index_reason": plan.reason,
        "metric": "inner_product (cosine on L2-normalised vectors)",
        **tuning,
        "images_seen": stats["seen"],
        "skipped_unreadable": stats["skipped"],
        "duplicates": stats["duplicates"],
        "seconds": {
            "embed": round(embed_seconds, 2),
            "index": round(build_seconds, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    }
    (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=list) + "\n")
    version = publish(out, staged)
    return BuildReport(Path(out), version, manifest)
