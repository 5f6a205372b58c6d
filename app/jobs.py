"""Background index rebuild with an atomic swap; searches never stop.

1. Snapshot (read lock, milliseconds): catalog backup, rows, journal position.
2. Re-embed every image from the image store and build + tune a new FAISS index, in a
   worker thread whose CPU share is bounded by a duty cycle (it sleeps between batches).
3. Swap (write lock, a fraction of a second): the writes journalled since the snapshot are
   re-embedded if the encoder changed and become the new version's journal; the version is
   checked, published (CURRENT switches) and opened; the service's reference is replaced.
A crash at any point leaves the previous version and its journal, so nothing acknowledged
is lost; a failure leaves the live index untouched.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
import torch

from index.build import build_faiss, tune_index
from index.choose import plan_index
from index.journal import AddEntry, Journal
from index.store import CATALOG_FILE, INDEX_FILE, MANIFEST_FILE, journal_path, load, publish, staging_dir
from model.data import decode_square
from model.embed import Encoder, load_encoder

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
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
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
        assert self.service.store is not None
        self.service.store.delete(sha256)

    def start(self, encoder_path: str | None = None, factory: str | None = None) -> RebuildJob:
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
            job.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
            with self._lock:
                self._running = None
                deferred, self._deferred_deletes = self._deferred_deletes, []
            assert self.service.store is not None
            for sha in deferred:
                self.service.store.delete(sha)

    def _embed(self, encoder: Encoder, shas: list[str], job: RebuildJob | None = None) -> np.ndarray:
        store = self.service.store
        assert store is not None
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
            batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
            out.append(encoder.embed_uint8(batch))
            if job is not None:
                job.done = min(job.total, start + len(chunk))
            busy = time.perf_counter() - began
            time.sleep(busy * (1 - self.duty_cycle) / self.duty_cycle)  # leave the rest to searches
        return np.concatenate(out) if out else np.empty((0, encoder.feature_dim), np.float32)

    def _rebuild(self, job: RebuildJob) -> Path:
        service, settings = self.service, self.service.settings
        old = service.index
        assert old is not None and old.journal is not None and service.encoder is not None
        root = settings.index_path
        t0 = time.perf_counter()
        staged = staging_dir(root)
        with old.lock.read():  # a consistent snapshot: catalog + journal position
            old.catalog.backup_to(staged / CATALOG_FILE)
            rows = list(old.catalog.rows())
            position = old.journal.entries
        job.total = len(rows)
        encoder = load_encoder(job.encoder_path, settings.device) if job.encoder_path else service.encoder
        vectors = self._embed(encoder, [r.sha256 for r in rows], job)
        t_embed = time.perf_counter()
        ids = np.array([r.id for r in rows], dtype=np.int64)
        plan = plan_index(max(len(rows), 1), encoder.feature_dim, 4 * 1024**3, job.factory)
        index = build_faiss(vectors, ids, plan.factory)
        tuning = tune_index(index, vectors, ids, 0.95)
        faiss.write_index(index, str(staged / INDEX_FILE))
        name = staged.name.removeprefix(".tmp-")
        manifest = {
            **old.manifest,
            "version": name,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "encoder": {"path": encoder.path, "sha256": encoder.checksum, "config": encoder.config.__dict__},
            "dim": encoder.feature_dim,
            "count": len(rows),
            "index_type": plan.factory,
            "index_reason": plan.reason,
            **tuning,
            "rebuilt_by_job": job.id,
        }
        (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=list) + "\n")
        self._check(index, ids)
        t_build = time.perf_counter()
        with old.lock.write():  # writes wait; searches already running finish first
            tail = list(old.journal.replay(position))
            if encoder.checksum != service.encoder.checksum:
                adds = [e for e in tail if isinstance(e, AddEntry)]
                fresh = self._embed(encoder, [e.image.sha256 for e in adds])
                swap = {id(e): AddEntry(e.id, e.image, v) for e, v in zip(adds, fresh, strict=True)}
                tail = [swap.get(id(e), e) for e in tail]
            Journal(journal_path(root, name)).append(tail)
            publish(root, staged)
            new = load(root, encoder_checksum=encoder.checksum, writable=True, clean=False)
            old.retired = True  # writes waiting on the old lock retry on the new index
            service.swap(new, encoder)
            old.journal.path.unlink(missing_ok=True)
        job.version = name
        job.timings = {
            "embed_s": round(t_embed - t0, 2),
            "build_s": round(t_build - t_embed, 2),
            "swap_s": round(time.perf_counter() - t_build, 3),
            "tail_writes": len(tail),
        }
        LOG.info("rebuild %s published %s (%d images) %s", job.id, name, new.count, job.timings)
        return staged

    @staticmethod
    def _check(index: faiss.Index, ids: np.ndarray) -> None:
        """Before publishing: the new index holds exactly the catalog's ids and finds its own images."""
        if index.ntotal != len(ids):
            raise RuntimeError(f"new index holds {index.ntotal} vectors for {len(ids)} catalog rows")
        sample = ids[:: max(1, len(ids) // 20)][:20]
        if len(sample):
            vectors = np.stack([index.reconstruct(int(i)) for i in sample])
            _, found = index.search(vectors, 5)
            known = set(ids.tolist())
            hits = [set(f.tolist()) - {-1} for f in found]
            if not all(h <= known and int(me) in h for h, me in zip(hits, sample, strict=True)):
                raise RuntimeError("a sample search of the new index did not find its own images")
