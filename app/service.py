"""What the routes call: decode an upload, embed it (micro-batched), search, join the catalog."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from app.batcher import MicroBatcher
from app.config import Settings
from app.metrics import BATCH_SIZE, INDEX_SIZE, STAGE_SECONDS
from index.catalog import CatalogRow, NewImage
from index.images import ImageStore
from index.store import ImageIndex, IndexRetiredError, load
from model.data import UnreadableImageError, decode_opened, open_image
from model.embed import Encoder, load_encoder
from model.hardware import usable_cores

LOG = logging.getLogger(__name__)
T = TypeVar("T")

# Formats we decode; anything else that PIL recognises is an unsupported type (415).
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})


class UnsupportedImageTypeError(UnreadableImageError):
    pass


@dataclass
class Neighbour:
    id: int
    score: float
    row: CatalogRow | None


@dataclass
class Timings:
    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


@dataclass
class SearchService:
    settings: Settings
    encoder: Encoder | None = None
    index: ImageIndex | None = None
    store: ImageStore | None = None
    batcher: MicroBatcher | None = None
    load_error: str | None = None
    decoding: int = 0  # requests between upload and embedding (the batcher waits for them)
    decode_pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.decode_pool = ThreadPoolExecutor(self.settings.decode_workers or usable_cores(), "decode")

    @property
    def ready(self) -> bool:
        return self.encoder is not None and self.index is not None and self.batcher is not None

    def load(self) -> None:
        """Load the encoder and the index (blocking; run it off the event loop)."""
        s = self.settings
        torch.set_num_threads(s.torch_threads or usable_cores())
        encoder = load_encoder(s.encoder_path, s.device)
        # Writable: half-written versions are cleaned up and journalled writes replayed.
        index = load(s.index_path, encoder_checksum=encoder.checksum, writable=True)
        self.store = ImageStore(s.store_path)
        # Warm the encoder so the first real query does not pay for lazy initialisation.
        encoder.embed_uint8(torch.zeros(1, 3, encoder.image_size, encoder.image_size, dtype=torch.uint8))
        self.encoder, self.index = encoder, index
        LOG.info("ready: encoder %s, index %s (%d images)", s.encoder_path, index.version, index.count)

    def swap(self, index: ImageIndex, encoder: Encoder) -> None:
        """Switch to a new index (and encoder): requests that already hold the old one finish on it."""
        self.encoder, self.index = encoder, index
        INDEX_SIZE.set(index.count)

    async def add_images(
        self, uploads: list[tuple[bytes, str | None, str | None]], timings: Timings
    ) -> list[tuple[int, bool, str]]:
        """Store, embed and index uploads (bytes, label, uri): (id, created, sha256) each.

        Every image is decoded first, so a bad one rejects the request before anything is
        written; bytes are fsynced to the store and the index write to the journal before this
        returns.
        """
        assert self.index is not None and self.store is not None
        pixels = [await self.decode_async(data, timings) for data, _, _ in uploads]
        vectors = np.stack([await self.embed_async(p, timings) for p in pixels])
        metas = []
        for data, label, uri in uploads:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
            sha = await asyncio.to_thread(self.store.put, data)
            metas.append(NewImage(uri or f"upload/{sha}", sha, width, height, label))
        results = await self._write(lambda index: index.add(vectors, metas))
        return [(i, created, m.sha256) for (i, created), m in zip(results, metas, strict=True)]

    async def remove_image(self, image_id: int) -> str | None:
        """Remove from the index and the catalog (journalled). Returns the sha256 of the bytes
        it held (the caller deletes them from the store) or None for an unknown id."""
        assert self.index is not None
        row = self.index.rows([image_id]).get(image_id)
        if row is None:
            return None
        removed = await self._write(lambda current: current.remove([image_id]))
        return row.sha256 if removed else None

    async def _write(self, operation: Callable[[ImageIndex], T]) -> T:
        """Run a write on the live index; if a rebuild retired it meanwhile, on its successor."""
        for _ in range(5):
            assert self.index is not None
            try:
                return await asyncio.to_thread(operation, self.index)
            except IndexRetiredError:
                continue
        raise RuntimeError("the index kept being replaced during a write; try again")

    def start_batcher(self) -> None:
        def embed_batch(pixels: np.ndarray) -> np.ndarray:
            assert self.encoder is not None
            return self.encoder.embed_uint8(torch.from_numpy(pixels).permute(0, 3, 1, 2))

        self.batcher = MicroBatcher(
            embed_batch,
            self.settings.batch_max_size,
            self.settings.batch_max_wait_ms / 1000,
            on_batch=lambda n, _: BATCH_SIZE.observe(n),
            expected=lambda: self.decoding,
        )
        self.batcher.start()

    def decode(self, data: bytes) -> np.ndarray:
        """Bytes -> (S, S, 3) uint8; UnreadableImageError / ImageTooLargeError on bad input."""
        assert self.encoder is not None
        if not data:
            raise UnreadableImageError("the uploaded file is empty")
        img = open_image(data, self.settings.max_image_pixels)  # header only: size checked before decoding
        if img.format not in SUPPORTED_FORMATS:
            raise UnsupportedImageTypeError(
                f"unsupported image type {img.format}; send JPEG, PNG, WebP, GIF, BMP or TIFF"
            )
        return decode_opened(img, self.encoder.image_size)

    async def decode_async(self, data: bytes, timings: Timings) -> np.ndarray:
        started = time.perf_counter()
        self.decoding += 1
        try:
            pixels = await asyncio.get_running_loop().run_in_executor(self.decode_pool, self.decode, data)
        finally:
            self.decoding -= 1
        elapsed = time.perf_counter() - started
        STAGE_SECONDS.labels("decode").observe(elapsed)
        timings.decode_ms += 1000 * elapsed
        return pixels

    async def embed_async(self, pixels: np.ndarray, timings: Timings) -> np.ndarray:
        assert self.batcher is not None
        started = time.perf_counter()
        vector = await self.batcher.embed(pixels)
        elapsed = time.perf_counter() - started
        STAGE_SECONDS.labels("embed").observe(elapsed)
        timings.embed_ms += 1000 * elapsed
        return vector

    async def search_vectors(
        self, vectors: np.ndarray, k: int, min_score: float | None, timings: Timings, exclude: int | None = None
    ) -> list[list[Neighbour]]:
        """Search in a worker thread (FAISS releases the GIL) and join catalog rows."""
        assert self.index is not None
        index = self.index  # one version for the whole request, even if a swap happens meanwhile
        started = time.perf_counter()
        extra = 1 if exclude is not None else 0
        scores, ids = await asyncio.get_running_loop().run_in_executor(None, index.search, vectors, k + extra)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            pairs = [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if int(i) != exclude][:k]
            if min_score is not None:
                pairs = [(i, s) for i, s in pairs if s >= min_score]
            rows = index.rows([i for i, _ in pairs])
            results.append([Neighbour(i, s, rows.get(i)) for i, s in pairs])
        elapsed = time.perf_counter() - started
        STAGE_SECONDS.labels("search").observe(elapsed)
        timings.search_ms += 1000 * elapsed
        return results

    def info(self) -> dict[str, Any]:
        assert self.index is not None and self.encoder is not None
        m = self.index.manifest
        return {
            "version": self.index.version,
            "count": self.index.count,
            "index_type": m.get("index_type"),
            "search_params": m.get("search_params", {}),
            "recall_at_10": m.get("recall_at_10"),
            "dim": self.index.dim,
            "encoder_sha256": self.encoder.checksum,
            "encoder_arch": self.encoder.config.arch,
            "built_at": m.get("built_at"),
        }

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        if self.index is not None:
            self.index.close()
