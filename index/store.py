"""A versioned FAISS index on disk, and the open index the service searches.

Layout of an index directory:
    ROOT/CURRENT                 name of the live version (replaced atomically)
    ROOT/versions/<version>/     index.faiss, catalog.sqlite, manifest.json
    ROOT/versions/.tmp-*         a version being built; ignored and cleaned up on load

A version is never edited once published (build offline, swap atomically); a crash while
building leaves CURRENT pointing at the previous, complete version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.catalog import Catalog, CatalogRow, NewImage
from index.choose import set_search_param, unwrap
from index.journal import AddEntry, Entry, Journal, RemoveEntry

LOG = logging.getLogger(__name__)

INDEX_FILE, CATALOG_FILE, MANIFEST_FILE, POINTER = "index.faiss", "catalog.sqlite", "manifest.json", "CURRENT"
TMP_PREFIX = ".tmp-"


class IndexNotFoundError(FileNotFoundError):
    pass


class IndexRetiredError(RuntimeError):
    """This open index was replaced by a newer version; write to the current one instead."""


class EncoderMismatchError(ValueError):
    """The index was built with another encoder than the one given."""


def new_version_name() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(path)


def staging_dir(root: str | Path) -> Path:
    """A fresh temporary version folder beside the published ones."""
    versions = Path(root) / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    tmp = versions / f"{TMP_PREFIX}{new_version_name()}"
    tmp.mkdir()
    return tmp


def publish(root: str | Path, staged: Path) -> str:
    """fsync the staged version, rename it into place, then switch CURRENT to it."""
    root = Path(root)
    name = staged.name.removeprefix(TMP_PREFIX)
    fsync_tree(staged)
    final = staged.parent / name
    staged.rename(final)
    fsync_dir(staged.parent)
    pointer_tmp = root / f".{POINTER}.{secrets.token_hex(4)}"
    pointer_tmp.write_text(name + "\n")
    with pointer_tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    pointer_tmp.replace(root / POINTER)
    fsync_dir(root)
    LOG.info("published index version %s in %s", name, root)
    return name


def current_version(root: str | Path) -> Path:
    root = Path(root)
    pointer = root / POINTER
    if not pointer.exists():
        raise IndexNotFoundError(
            f"no index at {str(root)!r} (no {POINTER} file); build one with `latent-search index build`"
        )
    version = root / "versions" / pointer.read_text().strip()
    if not (version / MANIFEST_FILE).exists():
        raise IndexNotFoundError(f"{str(root)!r} points at {version.name!r}, which is incomplete or missing")
    return version


def clean_staging(root: str | Path) -> int:
    """Remove half-written versions left by a crash. Returns how many were removed."""
    versions = Path(root) / "versions"
    removed = 0
    if versions.is_dir():
        for stale in versions.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
            removed += 1
    if removed:
        LOG.warning("removed %d half-written index version(s) from %s", removed, root)
    return removed


def read_manifest(root: str | Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((current_version(root) / MANIFEST_FILE).read_text())
    return manifest


class RWLock:
    """Many concurrent readers (searches) or one writer (add/remove)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class ImageIndex:
    """An open index version: FAISS index (with an id map) + catalog + manifest."""

    def __init__(
        self,
        index: faiss.Index,
        catalog: Catalog,
        manifest: dict[str, Any],
        path: Path | None,
        journal: Journal | None = None,
    ) -> None:
        self.index, self.catalog, self.manifest, self.path, self.journal = index, catalog, manifest, path, journal
        self.lock = RWLock()
        self.retired = False  # set (under the write lock) when a rebuild swaps in a new version
        params = manifest.get("search_params") or {}
        for value in params.values():
            set_search_param(self.index, int(value))
        self._enable_lookup_by_id()

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    def search(self, vectors: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k by cosine for each row of `vectors` (unit vectors, (Q, d) float32).

        Returns (scores, ids), one array per query, best first, FAISS's -1 padding removed
        (so a query may get fewer than k hits when the index holds fewer than k images).
        """
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}), got {queries.shape}")
        if k < 1:
            raise ValueError("k must be >= 1")
        with self.lock.read():
            if self.index.ntotal == 0:
                return [np.empty(0, np.float32)] * len(queries), [np.empty(0, np.int64)] * len(queries)
            scores, ids = self.index.search(queries, min(k, int(self.index.ntotal)))
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
            fresh = [i for i, (_, created) in enumerate(results) if created]
            if fresh:
                ids = np.array([results[i][0] for i in fresh], dtype=np.int64)
                self.index.add_with_ids(vecs[fresh], ids)
                if self.journal is not None:  # durable before the caller acknowledges
                    self.journal.append([AddEntry(results[i][0], images[i], vecs[i]) for i in fresh])
        return results

    def remove(self, ids: list[int]) -> int:
        """Remove ids from the index and the catalog; returns how many the catalog held."""
        with self.lock.write():
            self._check_live()
            self._remove_from_index(ids)
            removed = self.catalog.remove(ids)
            if self.journal is not None and removed:
                self.journal.append([RemoveEntry(tuple(int(i) for i in ids))])
            return removed

    def _enable_lookup_by_id(self) -> None:
        """IVF lists need an id -> list position map to reconstruct vectors by id ("more like this")."""
        with contextlib.suppress(RuntimeError):  # not an IVF index: nothing to do
            ivf = faiss.extract_index_ivf(unwrap(self.index))
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]

    def _remove_from_index(self, ids: Iterable[int]) -> None:
        # IDSelectorArray: the only selector an IVF hashtable direct map can remove with.
        arr = np.ascontiguousarray(list(ids), dtype=np.int64)
        self.index.remove_ids(faiss.IDSelectorArray(len(arr), faiss.swig_ptr(arr)))

    def _check_live(self) -> None:
        if self.retired:
            raise IndexRetiredError(f"index version {self.version} was replaced")

    def replay(self, entries: Iterable[Entry]) -> int:
        """Apply journal entries (at load, or onto a rebuilt index); returns how many."""
        n = 0
        for entry in entries:
            if isinstance(entry, AddEntry):
                ((got, created),) = self.catalog.add([entry.image], ids=[entry.id])
                if created:
                    self.index.add_with_ids(entry.vector[None, :], np.array([got], dtype=np.int64))
            else:
                self._remove_from_index(entry.ids)
                self.catalog.remove(entry.ids)
            n += 1
        return n

    def rows(self, ids: list[int]) -> dict[int, CatalogRow]:
        return self.catalog.get(ids)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors by id (approximate for PQ indexes)."""
        with self.lock.read():
            return np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.empty((0, self.dim))

    def save(self, directory: Path) -> None:
        """Write index, catalog and manifest into `directory` (a staging folder)."""
        with self.lock.read():
            faiss.write_index(self.index, str(directory / INDEX_FILE))
            self.catalog.backup_to(directory / CATALOG_FILE)
        manifest = {**self.manifest, "count": self.count}
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

    def commit(self, root: str | Path) -> str:
        """Publish the current state as a new version of `root`; returns its name."""
        staged = staging_dir(root)
        name = staged.name.removeprefix(TMP_PREFIX)
        self.manifest = {
            **self.manifest,
            "version": name,
            "count": self.count,
            "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.save(staged)
        publish(root, staged)
        self.path = Path(root) / "versions" / name
        if self.journal is not None:  # the new version holds every write so far
            old = self.journal.path
            self.journal = Journal(journal_path(root, name))
            old.unlink(missing_ok=True)
        return name

    def close(self) -> None:
        self.catalog.close()


def load(
    root: str | Path, encoder_checksum: str | None = None, writable: bool = False, clean: bool = True
) -> ImageIndex:
    """Open the current version of an index directory.

    Half-written versions are cleaned up first. With `encoder_checksum`, an index built by a
    different encoder is refused (its vectors would be meaningless for that encoder's queries).
    Read-only opens memory-map the index file where FAISS supports it.
    """
    root = Path(root)
    if writable and clean:
        clean_staging(root)
    version = current_version(root)
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    built_with = manifest.get("encoder", {}).get("sha256")
    if encoder_checksum is not None and built_with != encoder_checksum:
        raise EncoderMismatchError(
            f"index {str(root)!r} was built with encoder sha256 {str(built_with)[:12]}..., not "
            f"{encoder_checksum[:12]}...; rebuild it with `latent-search index build --encoder ...` "
            "or serve the encoder it was built with"
        )
    path = str(version / INDEX_FILE)
    if writable:
        # Writes go to a private copy of the catalog plus the journal (replayed here);
        # commit() publishes them as a new version.
        index = faiss.read_index(path)
        work = staging_dir(root)
        shutil.copy2(version / CATALOG_FILE, work / CATALOG_FILE)
        journal = Journal(journal_path(root, version.name))
        opened = ImageIndex(index, Catalog(work / CATALOG_FILE), manifest, version)
        replayed = opened.replay(journal.replay())
        opened.journal = journal
        if replayed:
            LOG.info("replayed %d journalled write(s) onto %s", replayed, version.name)
        return opened
    else:
        try:
            index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            index = faiss.read_index(path)
    catalog = Catalog(version / CATALOG_FILE, read_only=True)
    return ImageIndex(index, catalog, manifest, version)


def journal_path(root: str | Path, version: str) -> Path:
    return Path(root) / "journal" / f"{version}.jsonl"
