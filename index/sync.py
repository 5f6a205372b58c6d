"""Keep an index in step with a folder of images (`latent-search index sync`, POST /index/sync).

A sync compares the folder with the catalog by content (sha256) and changes only what differs:
  - bytes new to the index are decoded, embedded and added (their folder's name is the label,
    as `index build` gives it);
  - bytes found nowhere in the folder any more are removed;
  - a file whose bytes changed is both: its old entry goes, its new bytes come in;
  - known bytes at another path (a renamed or moved file) keep their id, vector and whatever
    is keyed by the id: only the uri (and the list of byte-identical copies) moves.
Reading every file's bytes to hash them would cost as much as the collection, so each file's
(size, mtime) and sha256 are remembered in `sync-state.sqlite` in the index directory: a file
whose size and mtime are unchanged is not read again. The cost of a sync is a directory walk
plus work in proportion to what changed.

Safety first: a folder that is missing, not a folder, unreadable or holds no images (an
unmounted disk looks like that), a walk that could not read part of the folder, or a sync that
would remove more than `max_removed` of the index (default 10 %) changes nothing; the error
says why and how to go ahead (`force`). Each step (moves, each chunk of adds, each chunk of
removals) is written through the index's journal before the next begins, so a sync that is
killed loses nothing acknowledged, and running it again finishes the job: the plan is made
afresh from the folder and the catalog.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index.catalog import NewImage
from index.folder import FileStates, SyncRefusedError, scan
from index.images import ImageStore
from index.journal import MoveEntry
from index.store import ImageIndex
from model.collections.layout import label_of
from model.embedding.images import UnreadableImageError, decode_image
from model.embedding.runtime import EncoderRuntime

LOG = logging.getLogger(__name__)

DEFAULT_MAX_REMOVED = 0.10
CHUNK = 64


@dataclass
class SyncPlan:
    files: int  # image files in the folder
    add: list[tuple[str, list[str]]] = field(default_factory=list)  # (sha256, its uris) new to the index
    remove: list[int] = field(default_factory=list)  # ids whose bytes are nowhere in the folder
    changed: int = 0  # of the removals, files still there with other bytes (re-embedded, not lost)
    move: list[MoveEntry] = field(default_factory=list)  # known bytes at another place
    unreadable: list[str] = field(default_factory=list)
    stats: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # uri -> (size, mtime_ns, sha256)
    fresh: set[str] = field(default_factory=set)  # uris read and hashed this time (new size or mtime)
    vanished: list[str] = field(default_factory=list)  # uris remembered from a sync before, gone now

    @property
    def hashed(self) -> int:
        return len(self.fresh)

    @property
    def lost(self) -> int:
        """Entries whose file is gone (not changed in place)."""
        return len(self.remove) - self.changed

    def summary(self) -> dict[str, int]:
        return {
            "files": self.files,
            "hashed": self.hashed,
            "added": len(self.add),
            "removed": len(self.remove),
            "changed": self.changed,
            "moved": len(self.move),
            "unreadable": len(self.unreadable),
        }


def plan_sync(index: ImageIndex, folder: str | Path, states: FileStates, allow_empty: bool = False) -> SyncPlan:
    """What a sync of `index` with `folder` would change (reads only files with a new size or
    mtime). An empty folder is refused unless `allow_empty` (forced)."""
    root = Path(folder).expanduser()
    files, errors = scan(root)
    if errors:
        raise SyncRefusedError(
            f"part of {str(root)!r} could not be read ({errors[0]}{' and more' if len(errors) > 1 else ''}): "
            "nothing was changed; fix the permissions or the disk and sync again"
        )
    if not files and not allow_empty:
        raise SyncRefusedError(
            f"{str(root)!r} holds no images (.jpg, .jpeg, .png, .webp): nothing was changed. If it is an unmounted "
            'disk, mount it; to empty the index on purpose, sync with force (`index sync --force`, or "force": true '
            "for POST /index/sync)"
        )
    known = states.all()
    plan = SyncPlan(files=len(files), vanished=[u for u in known if u not in files])
    uris_of: dict[str, list[str]] = {}
    for uri, (size, mtime) in sorted(files.items()):
        seen = known.get(uri)
        if seen is not None and seen[:2] == (size, mtime):
            sha = seen[2]
        else:
            try:
                sha = hashlib.sha256((root / uri).read_bytes()).hexdigest()
            except OSError as exc:
                LOG.warning("cannot read %s: %s", root / uri, exc)
                plan.unreadable.append(uri)
                continue
            plan.fresh.add(uri)
        plan.stats[uri] = (size, mtime, sha)
        uris_of.setdefault(sha, []).append(uri)
    rows = list(index.catalog.rows())
    copies = index.catalog.copies_of(r.sha256 for r in rows)
    unreadable = set(plan.unreadable)
    in_index: set[str] = set()
    for row in rows:
        in_index.add(row.sha256)
        now = uris_of.get(row.sha256)
        if now is None:
            if row.uri not in unreadable:  # a file we could not read may still hold these bytes
                plan.remove.append(row.id)
                plan.changed += row.uri in plan.stats
            continue
        uri = row.uri if row.uri in now else now[0]
        others = tuple(u for u in now if u != uri)
        if uri != row.uri or others != tuple(copies.get(row.sha256, [])):
            plan.move.append(MoveEntry(row.id, uri, others))
    plan.add = [(sha, uris) for sha, uris in uris_of.items() if sha not in in_index]
    return plan


def check_safe(plan: SyncPlan, count: int, max_removed: float, force: bool) -> None:
    """Refuse (SyncRefusedError) a plan that would remove more than `max_removed` of `count` entries."""
    if force or count == 0 or plan.lost <= max_removed * count:
        return
    raise SyncRefusedError(
        f"the sync would remove {plan.lost:,} of {count:,} indexed images ({plan.lost / count:.0%}, more than the "
        f"{max_removed:.0%} allowed in one sync) because their files are gone: nothing was changed. If the folder "
        "is only partly there (a disk not mounted, a copy still running), wait for it; if the files were deleted "
        'on purpose, sync with force (`index sync --force`, or "force": true for POST /index/sync) or raise '
        'the allowed share (--max-removed, "max_removed")'
    )


@dataclass
class SyncReport:
    summary: dict[str, int]
    skipped: list[str] = field(default_factory=list)  # new files that could not be decoded


def apply_sync(
    index: ImageIndex,
    plan: SyncPlan,
    folder: str | Path,
    encoder: EncoderRuntime,
    states: FileStates,
    store: ImageStore | None = None,
    chunk: int = CHUNK,
    on_step: Callable[[str, int], None] | None = None,
    delete_bytes: Callable[[str], None] | None = None,
) -> SyncReport:
    """Carry out `plan`: moves, then adds a chunk at a time, then removals; each step journalled.

    New images' bytes go to `store`; a removed image's bytes are handed to `delete_bytes` (the
    service defers them while a rebuild may still read them)."""
    root = Path(folder).expanduser()
    step = on_step or (lambda what, n: None)
    if plan.move:
        index.move(plan.move)
        step("moved", len(plan.move))
    skipped: list[str] = []
    for start in range(0, len(plan.add), chunk):
        part = plan.add[start : start + chunk]
        skipped += _add(index, part, root, encoder, store)
        states.record({u: plan.stats[u] for _, uris in part for u in uris})
        step("added", len(part))
    for start in range(0, len(plan.remove), chunk):
        ids = plan.remove[start : start + chunk]
        shas = [row.sha256 for row in index.catalog.get(ids).values()]
        index.remove(ids)
        if delete_bytes is not None:
            for sha in shas:
                delete_bytes(sha)
        step("removed", len(ids))
    states.forget(plan.vanished)
    states.record({u: plan.stats[u] for u in plan.fresh})  # unchanged files' states stand as they were
    return SyncReport(plan.summary() | {"skipped": len(skipped)}, skipped)


def _add(
    index: ImageIndex, part: list[tuple[str, list[str]]], root: Path, encoder: EncoderRuntime, store: ImageStore | None
) -> list[str]:
    """Decode, embed and add one chunk of new bytes (their other uris as copies); the uris skipped."""
    pixels, rows, skipped = [], [], []
    for _, uris in part:
        try:
            data = (root / uris[0]).read_bytes()
            decoded = decode_image(data, encoder.image_size)
        except (OSError, UnreadableImageError) as exc:
            LOG.warning("skipping %s: %s", root / uris[0], exc)
            skipped.append(uris[0])
            continue
        if store is not None:
            store.put(data)
        sha = hashlib.sha256(data).hexdigest()  # what was read now, should the file have changed since the plan
        pixels.append(decoded.pixels)
        rows.append([NewImage(u, sha, decoded.width, decoded.height, label_of(u)) for u in uris])
    if pixels:
        vectors = encoder.embed_pixels(np.stack(pixels))
        repeat = [len(r) for r in rows]
        index.add(np.repeat(vectors, repeat, axis=0), [img for r in rows for img in r])
    return skipped
