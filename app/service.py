"""What the routes call: decode an upload, embed it (micro-batched), search, join the catalog.

The service is `Live` once the encoder, the index and the image store are loaded; a route
gets that `Live` (non-Optional parts, one index version for the whole request) from the
readiness dependency in app.deps, and the service methods take what they work on from it.

Kept whole (about 360 lines): it is the request path, decode -> embed -> search -> join, and
the writes that share its stages; read top to bottom it is the whole of what a query costs.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from app.batcher import MicroBatcher
from app.config import Settings
from app.metrics import BATCH_SIZE, INDEX_SIZE, STAGE_SECONDS
from app.offload import run_blocking
from app.schemas import Timings
from index.catalog import CatalogFilter, CatalogRow, NewImage
from index.images import ImageStore
from index.replica import open_replica
from index.store import ImageIndex, IndexRetiredError, ReadReplicaError, load
from index.vector_store import BackendUnavailableError
from index.vectors import backend_of
from model.common.hardware import usable_cores
from model.embedding.images import SUPPORTED_FORMATS, DecodedImage, UnreadableImageError, decode_checked, open_checked
from model.embedding.query_views import QUERY_VIEWS, WHOLE, Box, Hits, decode_views, regroup, search_views
from model.embedding.runtime import EncoderRuntime, load_runtime
from model.embedding.unloading import IdleUnloading

LOG = logging.getLogger(__name__)
T = TypeVar("T")

# Uploads up to this many pixels (256 x 256) are decoded on the event loop: about a millisecond
# at most, less than handing them to the decode pool and back costs under load.
INLINE_DECODE_PIXELS = 256 * 256


class ServiceNotReadyError(RuntimeError):
    """The encoder and the index are not loaded (yet, or they failed to load)."""


@dataclass(frozen=True)
class Live:
    """What a loaded service serves from; replaced whole by a rebuild's swap."""

    encoder: EncoderRuntime
    index: ImageIndex
    store: ImageStore


@dataclass(frozen=True)
class Lookup:
    """One query for the search stage: its views' vectors (model.embedding.query_views)."""

    vectors: np.ndarray  # (V, d) unit vectors, V >= 1
    index: ImageIndex
    k: int


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    row: CatalogRow | None  # None when the image was removed between search and look-up


@dataclass
class SearchService:
    settings: Settings
    live: Live | None = None
    load_error: str | None = None
    decoding: int = 0  # requests between upload and embedding (the batcher waits for them)
    decode_pool: ThreadPoolExecutor = field(init=False)
    embedder: MicroBatcher[np.ndarray, np.ndarray] = field(init=False)  # (n, S, S, 3) -> (n, d) an item
    searcher: MicroBatcher[Lookup, tuple[np.ndarray, np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.decode_pool = ThreadPoolExecutor(s.decode_workers or usable_cores(), "decode")
        # Two stages, each micro-batched on its own thread, so that one batch is searched while
        # the next is embedded: decode (pool) -> embed (one pass a batch) -> search (one
        # batched search a batch: ~7x less CPU a query than one at a time on an IVF index).
        self.embedder = MicroBatcher(
            self._embed_batch,
            s.microbatch_max_size,
            s.microbatch_max_wait_ms / 1000,
            on_batch=lambda n, _: BATCH_SIZE.observe(n),
            expected=lambda: self.decoding,
        )
        self.searcher = MicroBatcher(self._search_batch, s.microbatch_max_size, 0.0)

    @property
    def ready(self) -> bool:
        return self.live is not None

    def require(self) -> Live:
        if self.live is None:
            reason = f": {self.load_error}" if self.load_error else "; try again in a few seconds"
            raise ServiceNotReadyError(f"the encoder and index are not loaded yet{reason}")
        return self.live

    def load(self) -> None:
        """Load the encoder and the index (blocking; run it off the event loop)."""
        s = self.settings
        threads = s.encoder_threads or usable_cores()
        encoder = load_runtime(s.encoder_path, s.runtime, s.device, threads, s.encoder_run_pixels)
        # Writable: half-written versions are cleaned up and journalled writes replayed.
        if s.read_replica:  # follows the writer's journal (app.replica); writes are refused
            index = open_replica(s.index_path, encoder_checksum=encoder.checksum, store_settings=s.store_settings)
        else:  # the writer: half-written versions are cleaned up and journalled writes replayed
            index = load(
                s.index_path, encoder_checksum=encoder.checksum, writable=True, store_settings=s.store_settings
            )
        stored_in = backend_of(index.manifest.vector_store)
        if s.vector_backend is not None and s.vector_backend != stored_in:
            index.close()
            raise BackendUnavailableError(
                f"the index at {str(s.index_path)!r} keeps its vectors in {stored_in}, but "
                f"LATENT_SEARCH_VECTOR_BACKEND={s.vector_backend}: rebuild it with `latent-search index build "
                f"--backend {s.vector_backend} --out {s.index_path} ...` or unset the variable"
            )
        # Warm the encoder so the first real query does not pay for lazy initialisation.
        encoder.embed_pixels(np.zeros((1, encoder.image_size, encoder.image_size, 3), np.uint8))
        self.live = Live(self._unloading(encoder), index, ImageStore(s.store_path))
        INDEX_SIZE.set(index.count)
        LOG.info(
            "ready: encoder %s (%s runtime), index %s (%d images)", s.encoder_path, encoder.runtime, index.version,
            index.count,
        )  # fmt: skip

    def require_writer(self) -> None:
        """Writes and rebuilds: refused on a read replica (before anything is stored)."""
        source = self.require().index.replica_of
        if source is not None:
            raise ReadReplicaError(
                f"this server is a read replica of {str(source)!r}: send writes and rebuilds to the writer"
            )

    def swap(self, index: ImageIndex, encoder: EncoderRuntime) -> None:
        """Switch to a new index (and encoder): requests that already hold the old one finish on it."""
        self.live = Live(self._unloading(encoder), index, self.require().store)
        INDEX_SIZE.set(index.count)

    def _unloading(self, encoder: EncoderRuntime) -> EncoderRuntime:
        """The encoder, unloaded after the configured idle time and reloaded on demand."""
        s = self.settings
        if s.encoder_idle_unload_s <= 0 or isinstance(encoder, IdleUnloading):
            return encoder
        threads = s.encoder_threads or usable_cores()
        reload = functools.partial(load_runtime, encoder.path, encoder.runtime, s.device, threads, s.encoder_run_pixels)
        return IdleUnloading(reload, s.encoder_idle_unload_s, first=encoder)

    @property
    def query_boxes(self) -> tuple[Box, ...]:
        """The views an uploaded query is searched as (model.embedding.query_views)."""
        return QUERY_VIEWS if self.settings.query_views else (WHOLE,)

    def _embed_batch(self, items: list[np.ndarray]) -> list[np.ndarray]:
        """Items of (n_i, S, S, 3) pixels (an image's views) -> (n_i, d) each, in one pass."""
        return regroup(self.require().encoder.embed_pixels(np.concatenate(items)), items)

    def _search(
        self, index: ImageIndex, vectors: np.ndarray, k: int, where: CatalogFilter | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every search of the service (the store applies its own tuning: StoreSettings)."""
        return index.search(vectors, k, where)

    def _search_views(
        self, index: ImageIndex, queries: list[np.ndarray], k: int, where: CatalogFilter | None = None
    ) -> Hits:
        """Each query's views ((V, d) each) searched together, each query's hits merged."""
        return search_views(lambda vectors, n: self._search(index, vectors, n, where), queries, k)

    def _search_batch(self, lookups: list[Lookup]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One batched search per index version in the batch (a swap may leave two)."""
        out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.float32), np.empty(0, np.int64))] * len(lookups)
        groups: dict[int, tuple[ImageIndex, list[int]]] = {}
        for i, lookup in enumerate(lookups):
            groups.setdefault(id(lookup.index), (lookup.index, []))[1].append(i)
        for index, members in groups.values():
            k = max(lookups[i].k for i in members)
            scores, ids = self._search_views(index, [lookups[i].vectors for i in members], k)
            for row, i in enumerate(members):
                out[i] = (scores[row][: lookups[i].k], ids[row][: lookups[i].k])
        return out

    def start(self) -> None:
        """Start the micro-batchers (needs the running event loop)."""
        self.embedder.start()
        self.searcher.start()

    def decode(self, data: bytes) -> DecodedImage:
        """Bytes -> the encoder's square and the original size; UnreadableImageError subclasses on bad input."""
        return decode_checked(self._open(data), self.require().encoder.image_size)

    def _open(self, data: bytes) -> Image.Image:
        if not data:
            raise UnreadableImageError("the uploaded file is empty")
        return open_checked(data, self.settings.max_image_pixels, SUPPORTED_FORMATS)

    async def _decode_with(self, decode: Callable[[Image.Image, int], T], data: bytes, timings: Timings) -> T:
        """Decode an upload: a small image right here (cheaper than the hand-off to the pool),
        a larger one on the decode pool. The header is read first either way."""
        started = time.perf_counter()
        img = self._open(data)  # header only: microseconds, and bad input fails before any hand-off
        size = self.require().encoder.image_size
        if img.width * img.height <= INLINE_DECODE_PIXELS:
            decoded = decode(img, size)
        else:
            self.decoding += 1
            try:
                decoded = await run_blocking(decode, img, size, executor=self.decode_pool)
            finally:
                self.decoding -= 1
        _observe("decode", started, timings)
        return decoded

    async def decode_async(self, data: bytes, timings: Timings) -> DecodedImage:
        """An upload to store: its square (the whole image) and its size."""
        return await self._decode_with(decode_checked, data, timings)

    async def embed_async(self, pixels: np.ndarray, timings: Timings) -> np.ndarray:
        """(n, S, S, 3) pixels -> (n, d) unit vectors, embedded in a shared batch."""
        started = time.perf_counter()
        vectors = await self.embedder.submit(pixels)
        _observe("embed", started, timings)
        return vectors

    async def embed_query(self, data: bytes, timings: Timings) -> np.ndarray:
        """Upload bytes -> the (V, d) unit vectors of its query views (decoded on the pool,
        embedded in a shared batch)."""
        boxes = self.query_boxes
        views = await self._decode_with(lambda img, size: decode_views(img, size, boxes), data, timings)
        return await self.embed_async(views, timings)

    async def search_upload(
        self,
        index: ImageIndex,
        data: bytes,
        k: int,
        min_score: float | None,
        timings: Timings,
        where: CatalogFilter | None = None,
    ) -> list[Hit]:
        """Upload bytes -> its neighbours in `index`: decoded on the pool, embedded and then
        searched each together with whatever other queries reached that stage meanwhile (a
        filtered search goes on its own: its candidates are not the batch's)."""
        views = await self.embed_query(data, timings)
        if where is not None and not where.empty:
            (hits,) = await self.search_vectors(index, [views], k, min_score, timings, where=where)
            return hits
        started = time.perf_counter()
        scores, ids = await self.searcher.submit(Lookup(views, index, k))
        hits = self.join(index, scores, ids, k, min_score)
        _observe("search", started, timings)
        return hits

    async def search_vectors(
        self,
        index: ImageIndex,
        queries: list[np.ndarray],
        k: int,
        min_score: float | None,
        timings: Timings,
        exclude: int | None = None,
        where: CatalogFilter | None = None,
    ) -> list[list[Hit]]:
        """Search queries ((V, d) vectors each: a query's views, or one stored vector) in a worker
        thread (FAISS releases the GIL) and join catalog rows."""
        started = time.perf_counter()
        extra = 1 if exclude is not None else 0
        scores, ids = await run_blocking(self._search_views, index, queries, k + extra, where)
        results = [self.join(index, s, i, k, min_score, exclude) for s, i in zip(scores, ids, strict=True)]
        _observe("search", started, timings)
        return results

    @staticmethod
    def join(
        index: ImageIndex,
        scores: np.ndarray,
        ids: np.ndarray,
        k: int,
        min_score: float | None,
        exclude: int | None = None,
    ) -> list[Hit]:
        """One query's search result as hits with their catalog rows (best first, at most k)."""
        pairs = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if int(i) != exclude][:k]
        if min_score is not None:
            pairs = [(i, s) for i, s in pairs if s >= min_score]
        rows = index.rows([i for i, _ in pairs])
        return [Hit(i, s, rows.get(i)) for i, s in pairs]

    async def add_images(
        self, uploads: list[tuple[bytes, str | None, str | None]], timings: Timings
    ) -> list[tuple[int, bool, str]]:
        """Store, embed and index uploads (bytes, label, uri): (id, created, sha256) each.

        Every image is decoded first, so a bad one rejects the request before anything is
        written; bytes are fsynced to the store and the index write to the journal before this
        returns.
        """
        self.require_writer()
        decoded = [await self.decode_async(data, timings) for data, _, _ in uploads]
        vectors = np.concatenate([await self.embed_async(d.pixels[None], timings) for d in decoded])
        store = self.require().store
        metas = []
        for (data, label, uri), image in zip(uploads, decoded, strict=True):
            sha = await run_blocking(store.put, data)
            metas.append(NewImage(uri or f"upload/{sha}", sha, image.width, image.height, label))
        results = await self._write(lambda index: index.add(vectors, metas))
        return [(i, created, m.sha256) for (i, created), m in zip(results, metas, strict=True)]

    async def remove_image(self, image_id: int) -> str | None:
        """Remove from the index and the catalog (journalled). Returns the sha256 of the bytes
        it held (the caller deletes them from the store) or None for an unknown id."""
        self.require_writer()
        row = self.require().index.rows([image_id]).get(image_id)
        if row is None:
            return None
        removed = await self._write(lambda current: current.remove([image_id]))
        return row.sha256 if removed else None

    async def _write(self, operation: Callable[[ImageIndex], T]) -> T:
        """Run a write on the live index; if a rebuild retired it meanwhile, on its successor."""
        for _ in range(5):
            try:
                return await run_blocking(operation, self.require().index)
            except IndexRetiredError:
                continue
        raise RuntimeError("the index kept being replaced during a write; try again")

    @staticmethod
    def info(live: Live) -> dict[str, Any]:
        m = live.index.manifest
        return {
            "version": live.index.version,
            "count": live.index.count,
            "index_type": m.index_type,
            "backend": backend_of(m.vector_store),
            "vector_store": m.vector_store,
            "search_params": m.search_params,
            "recall_at_10": m.recall_at_10,
            "dim": live.index.dim,
            "encoder_sha256": live.encoder.checksum,
            "encoder_arch": live.encoder.arch,
            "encoder_runtime": live.encoder.runtime,
            "encoder_loaded": not isinstance(live.encoder, IdleUnloading) or live.encoder.loaded,
            "built_at": m.built_at,
            "read_replica": live.index.replica_of is not None,
        }

    async def close(self) -> None:
        await self.embedder.stop()
        await self.searcher.stop()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        if self.live is not None:
            self.live.index.close()


def _observe(stage: str, started: float, timings: Timings) -> None:
    elapsed = time.perf_counter() - started
    STAGE_SECONDS.labels(stage).observe(elapsed)
    setattr(timings, f"{stage}_ms", getattr(timings, f"{stage}_ms") + 1000 * elapsed)
