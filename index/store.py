"""The open index the service searches and writes: a published version (index.versions) with
its vector store (index.vectors: FAISS in this process, or a Milvus collection), catalog and
manifest, plus the journal of writes made on top of it.

Searches share a read lock; an add or remove takes the write lock, changes index and catalog
and appends to the journal before it returns. A rebuild takes a `snapshot()` (a consistent
catalog copy and journal position) and later `hand_over()`s to the version it built: under the
write lock, the writes journalled meanwhile move to the new version, which is published and
opened, and this one is retired.

Kept whole (about 320 lines): every method of ImageIndex works under the same lock on the same
three objects (vector store, catalog, journal); split, the locking rules would be in two places.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from index.atlas import MAP_FILE, CollectionMap, load_map
from index.catalog import Catalog, CatalogFilter, CatalogRow, NewImage
from index.filtering import MatchingIds, exact_among
from index.journal import AddEntry, Entry, Journal, MoveEntry, RemoveEntry
from index.rwlock import RWLock
from index.vector_store import StoreSettings, VectorStore
from index.vectors import open_store
from index.versions import (
    CATALOG_FILE,
    MANIFEST_FILE,
    Manifest,
    clean_staging,
    current_version,
    journal_path,
    now_iso,
    publish,
    staging_dir,
    version_name,
)

LOG = logging.getLogger(__name__)


class IndexRetiredError(RuntimeError):
    """This open index was replaced by a newer version; write to the current one instead."""


class ReadReplicaError(RuntimeError):
    """This process serves a read replica (index.replica): writes go to the writer."""


class EncoderMismatchError(ValueError):
    """The index was built with another encoder than the one given."""


@dataclass(frozen=True)
class Snapshot:
    """A consistent view for a rebuild: the catalog's rows and how far the journal had got."""

    rows: list[CatalogRow]
    journal_position: int


class ImageIndex:
    """An open index version: vector store + catalog + manifest."""

    def __init__(
        self,
        backend: VectorStore,
        catalog: Catalog,
        manifest: Manifest,
        path: Path | None,
        journal: Journal | None = None,
    ) -> None:
        self.backend, self.catalog, self.manifest, self.path, self.journal = backend, catalog, manifest, path, journal
        self.lock = RWLock()
        self.retired = False  # set (under the write lock) when a rebuild swaps in a new version
        self.generation = 0  # counts writes, so that results derived from the contents can be cached
        self.store_settings: StoreSettings | None = None  # given at load, used again by hand_over
        self.replica_of: Path | None = None  # index.replica: the writer's index directory this one follows
        self.followed = 0  # index.replica: bytes of the writer's journal applied
        self.matching = MatchingIds(catalog)
        for value in manifest.search_params.values():
            backend.set_param(int(value))

    @property
    def dim(self) -> int:
        return self.backend.dim

    @property
    def count(self) -> int:
        return self.backend.count

    @property
    def version(self) -> str:
        return self.manifest.version

    def search(
        self, vectors: np.ndarray, k: int, where: CatalogFilter | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k by cosine for each row of `vectors` (unit vectors, (Q, d) float32), among the
        images `where` selects when given (the k nearest matching images, see search_among).

        Returns (scores, ids), one array per query, best first, FAISS's -1 padding removed
        (so a query may get fewer than k hits when the index holds fewer than k images).
        """
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}), got {queries.shape}")
        if k < 1:
            raise ValueError("k must be >= 1")
        with self.lock.read():  # the catalog and the index agree under the lock
            allowed = None if where is None or where.empty else self.matching.get(where, self.generation)
            if allowed is None:
                # No count first: a store pads what it lacks with -1 (dropped below), and asking
                # Milvus for its count would cost a second round trip on every search.
                scores, ids = self.backend.search(queries, k)
            elif not len(allowed):
                return [np.empty(0, np.float32)] * len(queries), [np.empty(0, np.int64)] * len(queries)
            else:
                k = min(k, len(allowed))
                scores, ids = self.backend.search_among(queries, k, allowed)
                short = (ids < 0).any(axis=1)
                if short.any():  # the approximate search under-filled some rows: exact for those
                    stored = self.vectors_locked(allowed)
                    scores[short], ids[short] = exact_among(stored, allowed, queries[short], k)
        keep = ids >= 0
        return [s[m] for s, m in zip(scores, keep, strict=True)], [i[m] for i, m in zip(ids, keep, strict=True)]

    def add(self, vectors: np.ndarray, images: list[NewImage]) -> list[tuple[int, bool]]:
        """Add images (catalog rows + vectors) under the write lock: (id, created) each.

        Bytes already in the catalog keep their id and are not added twice.
        """
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vecs) != len(images) or (len(vecs) and vecs.shape[1] != self.dim):
            raise ValueError("need one vector of the index's dimension per image")
        with self.lock.write():
            self._check_live()
            results = self.catalog.add(images)
            self.generation += 1
            fresh = [i for i, (_, created) in enumerate(results) if created]
            if fresh:
                ids = np.array([results[i][0] for i in fresh], dtype=np.int64)
                self.backend.add(vecs[fresh], ids)  # a remote store has accepted it when this returns
            if self.journal is not None:  # durable before the caller acknowledges
                # Known bytes under another uri too: replayed, they record that uri as a copy.
                known = self.catalog.get([i for i, created in results if not created])
                journalled = [n for n, (i, created) in enumerate(results) if created or known[i].uri != images[n].uri]
                if journalled:
                    self.journal.append([AddEntry(results[n][0], images[n], vecs[n]) for n in journalled])
        return results

    def remove(self, ids: list[int]) -> int:
        """Remove ids from the index and the catalog; returns how many the catalog held."""
        with self.lock.write():
            self._check_live()
            self.backend.remove(np.asarray(ids, dtype=np.int64))
            removed = self.catalog.remove(ids)
            self.generation += 1
            if self.journal is not None and removed:
                self.journal.append([RemoveEntry(tuple(int(i) for i in ids))])
            return removed

    def move(self, moves: list[MoveEntry]) -> int:
        """New places for known bytes (renamed or moved files): uri and copies change, the id,
        vector and anything keyed by the id stay. Returns how many ids the catalog held."""
        with self.lock.write():
            self._check_live()
            moved = [m for m in moves if self.catalog.move(m.id, m.uri, m.copies)]
            self.generation += 1
            if self.journal is not None and moved:
                self.journal.append(moved)
            return len(moved)

    def _check_live(self) -> None:
        if self.replica_of is not None:
            raise ReadReplicaError(
                f"this server is a read replica of {str(self.replica_of)!r}: send writes and rebuilds to the writer"
            )
        if self.retired:
            raise IndexRetiredError(f"index version {self.version} was replaced")

    def replay(self, entries: Iterable[Entry], vectors: bool = True) -> int:
        """Apply journal entries (at load, or onto a rebuilt index); returns how many.

        Idempotent on the vector store (an add replaces, a remove of an absent id is a no-op),
        so a store that outlives the process (Milvus) may already hold some of them. Without
        `vectors`, only the catalog (a replica over a shared store the writer has written)."""
        n = 0
        for entry in entries:
            if isinstance(entry, AddEntry):
                ((got, created),) = self.catalog.add([entry.image], ids=[entry.id])
                if created and vectors:
                    self.backend.add(entry.vector[None, :], np.array([got], dtype=np.int64))
            elif isinstance(entry, MoveEntry):
                self.catalog.move(entry.id, entry.uri, entry.copies)
            else:
                if vectors:
                    self.backend.remove(np.asarray(entry.ids, dtype=np.int64))
                self.catalog.remove(entry.ids)
            n += 1
        return n

    @functools.cached_property
    def map(self) -> CollectionMap | None:
        """The version's 2-D map (index.atlas), read on first use; None if it has none."""
        return load_map(self.path) if self.path is not None else None

    def rows(self, ids: list[int]) -> dict[int, CatalogRow]:
        return self.catalog.get(ids)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors by id (approximate for PQ indexes)."""
        with self.lock.read():
            return self.vectors_locked(ids)

    def vectors_locked(self, ids: np.ndarray) -> np.ndarray:
        """`vectors`, for a caller that already holds the lock."""
        if not len(ids):
            return np.empty((0, self.dim), np.float32)
        return self.backend.reconstruct(np.ascontiguousarray(ids, dtype=np.int64))

    def save(self, directory: Path) -> None:
        """Write the vector store's part, catalog and manifest into `directory` (a staging folder)."""
        with self.lock.read():
            self.backend.save(directory)
            self.catalog.backup_to(directory / CATALOG_FILE)
        if self.path is not None and (self.path / MAP_FILE).exists():  # the map of the version written on
            shutil.copy2(self.path / MAP_FILE, directory / MAP_FILE)
        (directory / MANIFEST_FILE).write_text(replace(self.manifest, count=self.count).to_json())

    def commit(self, root: str | Path) -> str:
        """Publish the current state as a new version of `root`; returns its name."""
        staged = staging_dir(root)
        name = version_name(staged)
        self.manifest = replace(self.manifest, version=name, count=self.count, committed_at=now_iso())
        self.save(staged)
        publish(root, staged)
        self.backend.publish()
        self.path = Path(root) / "versions" / name
        if self.journal is not None:  # the new version holds every write so far
            old = self.journal.path
            self.journal = Journal(journal_path(root, name))
            old.unlink(missing_ok=True)
        return name

    def snapshot(self, catalog_copy: Path) -> Snapshot:
        """Copy the catalog to `catalog_copy` and note the journal position, consistently."""
        with self.lock.read():
            self.catalog.backup_to(catalog_copy)
            return Snapshot(list(self.catalog.rows()), self.journal.entries if self.journal is not None else 0)

    def hand_over(
        self,
        root: str | Path,
        staged: Path,
        since: Snapshot,
        reembed: Callable[[list[AddEntry]], list[AddEntry]] | None,
        encoder_checksum: str,
        then: Callable[[ImageIndex], None],
    ) -> tuple[ImageIndex, int]:
        """Publish `staged` (built from `since`) as this index's successor; (new index, writes carried).

        Under the write lock (writes wait; searches already running finish first): the writes
        journalled since the snapshot, their vectors remade by `reembed` when the encoder
        changed, become the new version's journal; it is published and opened, `then(new)` runs
        (the service switches to it), and this index is retired so that waiting writes retry on
        the new one.
        """
        if self.journal is None:
            raise RuntimeError("only a writable index (opened with a journal) can hand over")
        with self.lock.write():
            tail = list(self.journal.replay(since.journal_position))
            if reembed is not None:
                adds = [e for e in tail if isinstance(e, AddEntry)]
                fresh = dict(zip(map(id, adds), reembed(adds), strict=True))
                tail = [fresh.get(id(e), e) for e in tail]
            name = version_name(staged)
            Journal(journal_path(root, name)).append(tail)
            publish(root, staged)
            new = load(
                root, encoder_checksum=encoder_checksum, writable=True, clean=False, store_settings=self.store_settings
            )
            new.backend.publish()
            then(new)
            self.retired = True
            self.backend.retire(new.backend)
            self.journal.path.unlink(missing_ok=True)
        return new, len(tail)

    def close(self) -> None:
        self.catalog.close()
        self.backend.close()
        if self.replica_of is not None:  # a replica's private catalog copy (index.replica)
            shutil.rmtree(self.catalog.path.parent, ignore_errors=True)


def load(
    root: str | Path,
    encoder_checksum: str | None = None,
    writable: bool = False,
    clean: bool = True,
    store_settings: StoreSettings | None = None,
) -> ImageIndex:
    """Open the current version of an index directory.

    Half-written versions are cleaned up first. With `encoder_checksum`, an index built by a
    different encoder is refused (its vectors would be meaningless for that encoder's queries).
    Read-only opens memory-map the index file where FAISS supports it. `store_settings` tune the
    vector store (index.vector_store.StoreSettings; a Milvus URI seen under another address).
    """
    root = Path(root)
    if writable and clean:
        clean_staging(root)
    version = current_version(root)
    manifest = Manifest.from_dict(json.loads((version / MANIFEST_FILE).read_text()))
    built_with = manifest.encoder_sha256
    if encoder_checksum is not None and built_with != encoder_checksum:
        raise EncoderMismatchError(
            f"index {str(root)!r} was built with encoder sha256 {str(built_with)[:12]}..., not "
            f"{encoder_checksum[:12]}...; rebuild it with `latent-search index build --encoder ...` "
            "or serve the encoder it was built with"
        )
    backend = open_store(version, manifest.vector_store, writable, store_settings)
    if writable:
        # Writes go to a private copy of the catalog plus the journal (replayed here);
        # commit() publishes them as a new version.
        work = staging_dir(root)
        shutil.copy2(version / CATALOG_FILE, work / CATALOG_FILE)
        journal = Journal(journal_path(root, version.name))
        opened = ImageIndex(backend, Catalog(work / CATALOG_FILE), manifest, version)
        replayed = opened.replay(journal.replay())
        opened.journal, opened.store_settings = journal, store_settings
        if replayed:
            LOG.info("replayed %d journalled write(s) onto %s", replayed, version.name)
        # A write a crash cut off after the store took it but before the journal did was never
        # acknowledged: a store that outlives the process (Milvus) lets go of it here.
        if (dropped := backend.reconcile(opened.catalog.ids())) > 0:
            LOG.warning("dropped %d vector(s) of unacknowledged writes from the vector store", dropped)
        return opened
    catalog = Catalog(version / CATALOG_FILE, read_only=True)
    return ImageIndex(backend, catalog, manifest, version)
