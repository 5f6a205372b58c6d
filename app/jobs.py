"""Background index rebuild with an atomic swap; searches never stop.

1. `ImageIndex.snapshot` (read lock, milliseconds): catalog copy, rows, journal position.
2. Re-embed every image from the image store and stage a version through the same pipeline
   as `latent-search index build` (index.pipeline), in a worker thread whose CPU share is
   bounded by a duty cycle (it sleeps between batches).
3. `ImageIndex.hand_over` (write lock, a fraction of a second): the writes journalled since
   the snapshot are re-embedded if the encoder changed and become the new version's journal;
   the version is published (CURRENT switches) and opened; the service switches to it.
A crash at any point leaves the previous version and its journal, so nothing acknowledged
is lost; a failure leaves the live index untouched.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from index.journal import AddEntry
from index.pipeline import BuildOptions, stage_version
from index.vectors import same_backend
from index.versions import CATALOG_FILE, now_iso, staging_dir, version_name
from model.embedding.images import decode_square
from model.embedding.runtime import EncoderRuntime, load_runtime, manifest_entry

if TYPE_CHECKING:
    from app.service import SearchService

LOG = logging.getLogger(__name__)


class RebuildRunningError(RuntimeError):
    pass


@dataclass
class RebuildJob:
    id: str
    state: str = "queued"  # queued | running | succeeded | failed
    done: int = 0
    total: int = 0
    encoder_path: str | None = None
    factory: str | None = None
    created_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    error: str | None = None
    version: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


class Rebuilder:
    def __init__(self, service: SearchService, duty_cycle: float = 0.5, batch_size: int = 128) -> None:
        if not 0 < duty_cycle <= 1:
            raise ValueError("duty_cycle must be in (0, 1]")
        self.service, self.duty_cycle, self.batch_size = service, duty_cycle, batch_size
        self.jobs: dict[str, RebuildJob] = {}
        self._lock = threading.Lock()
        self._running: RebuildJob | None = None
        self._deferred_deletes: list[str] = []

    def delete_bytes(self, sha256: str) -> None:
        """Delete a removed image's bytes, or after the running rebuild (which may still read them)."""
        with self._lock:
            if self._running is not None:
                self._deferred_deletes.append(sha256)
                return
        self.service.require().store.delete(sha256)

    def start(self, encoder_path: str | None = None, factory: str | None = None) -> RebuildJob:
        self.service.require_writer()
        with self._lock:
            if self._running is not None:
                raise RebuildRunningError(f"rebuild {self._running.id} is already running")
            job = RebuildJob(secrets.token_hex(8), encoder_path=encoder_path, factory=factory)
            self.jobs[job.id] = job
            self._running = job
        threading.Thread(target=self._run, args=(job,), name=f"rebuild-{job.id}", daemon=True).start()
        return job

    def _run(self, job: RebuildJob) -> None:
        job.state = "running"
        staged: Path | None = None
        try:
            staged = self._rebuild(job)
            job.state = "succeeded"
        except Exception as exc:
            LOG.exception("rebuild %s failed", job.id)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
        finally:
            job.finished_at = now_iso()
            with self._lock:
                self._running = None
                deferred, self._deferred_deletes = self._deferred_deletes, []
            store = self.service.require().store
            for sha in deferred:
                store.delete(sha)

    def _embed(self, encoder: EncoderRuntime, shas: list[str], job: RebuildJob | None = None) -> np.ndarray:
        """Re-embed stored images by sha256, a batch at a time, sleeping between batches so
        that searches keep (1 - duty_cycle) of the time."""
        store = self.service.require().store
        out = []
        for start in range(0, len(shas), self.batch_size):
            began = time.perf_counter()
            chunk = shas[start : start + self.batch_size]
            pixels = []
            for sha in chunk:
                data = store.get(sha)
                if data is None:
                    raise FileNotFoundError(f"image {sha} is in the catalog but not in the image store")
                pixels.append(decode_square(data, encoder.image_size))
            out.append(encoder.embed_pixels(np.stack(pixels)))
            if job is not None:
                job.done = min(job.total, start + len(chunk))
            busy = time.perf_counter() - began
            time.sleep(busy * (1 - self.duty_cycle) / self.duty_cycle)  # leave the rest to searches
        return np.concatenate(out) if out else np.empty((0, encoder.feature_dim), np.float32)

    def _rebuild(self, job: RebuildJob) -> Path:
        service, settings = self.service, self.service.settings
        live = service.require()
        root = settings.index_path
        t0 = time.perf_counter()
        staged = staging_dir(root)
        snapshot = live.index.snapshot(staged / CATALOG_FILE)  # read lock, milliseconds
        job.total = len(snapshot.rows)
        encoder = live.encoder
        if job.encoder_path:
            encoder = load_runtime(
                job.encoder_path,
                settings.runtime,
                settings.device,
                settings.encoder_threads,
                settings.encoder_run_pixels,
            )
        vectors = self._embed(encoder, [r.sha256 for r in snapshot.rows], job)
        t_embed = time.perf_counter()
        ids = np.array([r.id for r in snapshot.rows], dtype=np.int64)
        old = live.index.manifest
        options = BuildOptions(
            job.factory,
            settings.rebuild_memory_budget,
            settings.rebuild_recall_target,
            backend=same_backend(old.vector_store, settings.milvus_uri, settings.milvus_consistency),
        )
        built, _ = stage_version(
            staged, vectors, ids, manifest_entry(encoder), options, data=old.data, rebuilt_by_job=job.id
        )
        t_build = time.perf_counter()

        def reembed(adds: list[AddEntry]) -> list[AddEntry]:
            fresh = self._embed(encoder, [e.image.sha256 for e in adds])
            return [AddEntry(e.id, e.image, v) for e, v in zip(adds, fresh, strict=True)]

        changed = encoder.checksum != live.encoder.checksum
        try:
            remake = reembed if changed else None
            new, carried = live.index.hand_over(
                root, staged, snapshot, remake, encoder.checksum, lambda n: service.swap(n, encoder)
            )
        except BaseException:
            if staged.exists():  # never published: drop its Milvus collection; the alias is untouched
                built.drop()
            raise
        job.version = version_name(staged)
        job.timings = {
            "embed_s": round(t_embed - t0, 2),
            "build_s": round(t_build - t_embed, 2),
            "swap_s": round(time.perf_counter() - t_build, 3),
            "tail_writes": carried,
        }
        LOG.info("rebuild %s published %s (%d images) %s", job.id, job.version, new.count, job.timings)
        return staged
