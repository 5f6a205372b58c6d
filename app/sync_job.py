"""POST /index/sync: the folder sync (index.sync) as a background job of the running writer.

The job plans and applies against the live index, through its write lock and journal, with
the live encoder; removed images' bytes are deleted as the rebuilder allows (after a running
rebuild, which may still read them). A rebuild that swaps in a new version while a sync runs
retires the index the sync was writing to: the sync plans again on the new one (what it had
written is in the new version's journal), up to three times.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from index.folder import STATE_FILE, FileStates, SyncRefusedError
from index.store import IndexRetiredError
from index.sync import apply_sync, check_safe, plan_sync
from index.versions import now_iso

if TYPE_CHECKING:
    from app.jobs import Rebuilder
    from app.service import SearchService

LOG = logging.getLogger(__name__)
ATTEMPTS = 3


class SyncRunningError(RuntimeError):
    pass


@dataclass
class SyncJob:
    id: str
    data: str
    force: bool
    max_removed: float
    state: str = "queued"  # queued | running | succeeded | refused | failed
    done: dict[str, int] = field(default_factory=lambda: {"moved": 0, "added": 0, "removed": 0})
    summary: dict[str, int] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    error: str | None = None


class Syncer:
    def __init__(self, service: SearchService, rebuilder: Rebuilder) -> None:
        self.service, self.rebuilder = service, rebuilder
        self.jobs: dict[str, SyncJob] = {}
        self._lock = threading.Lock()
        self._running: SyncJob | None = None

    def start(self, data: str, force: bool = False, max_removed: float = 0.1) -> SyncJob:
        """Start a sync job; SyncRefusedError at once for a path that is not a folder."""
        self.service.require_writer()
        if not Path(data).expanduser().is_dir():
            raise SyncRefusedError(
                f"{data!r} is not a folder on the server (an unmounted disk?): nothing was changed; "
                "pass the folder the index follows"
            )
        with self._lock:
            if self._running is not None:
                raise SyncRunningError(f"sync {self._running.id} is already running")
            job = SyncJob(secrets.token_hex(8), data, force, max_removed)
            self.jobs[job.id] = job
            self._running = job
        threading.Thread(target=self._run, args=(job,), name=f"sync-{job.id}", daemon=True).start()
        return job

    def _run(self, job: SyncJob) -> None:
        job.state = "running"
        try:
            for attempt in range(ATTEMPTS):
                try:
                    self._sync(job)
                    job.state = "succeeded"
                    return
                except IndexRetiredError:
                    LOG.info("sync %s: the index was swapped (attempt %d); planning again", job.id, attempt + 1)
            raise RuntimeError(f"the index was swapped {ATTEMPTS} times during the sync; run it again")
        except SyncRefusedError as exc:
            job.state, job.error = "refused", str(exc)
        except Exception as exc:
            LOG.exception("sync %s failed", job.id)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = now_iso()
            with self._lock:
                self._running = None

    def _sync(self, job: SyncJob) -> None:
        live = self.service.require()
        states = FileStates(self.service.settings.index_path / STATE_FILE)
        try:
            plan = plan_sync(live.index, job.data, states, allow_empty=job.force)
            check_safe(plan, live.index.count, job.max_removed, job.force)

            def step(what: str, n: int) -> None:
                job.done[what] += n

            report = apply_sync(
                live.index,
                plan,
                job.data,
                live.encoder,
                states,
                live.store,
                on_step=step,
                delete_bytes=self.rebuilder.delete_bytes,
            )
            job.summary = report.summary
        finally:
            states.close()
