"""Builds and reopens a version's vector store in the backend its manifest names (index.vector_store
is the interface; FAISS: index.faiss_index, Milvus: index.milvus_index).

The catalog, image store, journal and versions stay the same for both; only the vectors move.
A version's manifest records its store (`vector_store`: backend name and, for Milvus, URI,
collection and alias), so serving needs no flag: `open_store` reopens what was built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from index.faiss_index import FaissStore
from index.milvus_index import MilvusStore
from index.plan import IndexPlan
from index.vector_store import BackendChoice, BackendUnavailableError, StoreSettings, VectorStore


def build_store(
    choice: BackendChoice, staged: Path, vectors: np.ndarray, ids: np.ndarray, plan: IndexPlan
) -> VectorStore:
    """A new store for the version being staged in `staged`, filled with (vectors, ids)."""
    if choice.name == "milvus":
        return MilvusStore.build(choice.uri, staged, vectors, ids, plan, choice.consistency)
    return FaissStore.build(vectors, ids, plan.factory)


def open_store(
    version: Path,
    record: dict[str, Any] | None,
    writable: bool,
    settings: StoreSettings | None = None,
    replica: bool = False,
) -> VectorStore:
    """Reopen the store a version's manifest records (`record`; None: a FAISS file, as before
    the seam existed). `settings` tune it (and may redirect Milvus). `writable`: the
    writer's open (cleans up after crashes); `replica`: a read replica's (index.replica)."""
    name = (record or {}).get("backend", "faiss")
    s = settings or StoreSettings()
    if name == "milvus":
        root = version.parent.parent  # ROOT/versions/<version>
        return MilvusStore.open(root, record or {}, s.milvus_uri, writable, s.milvus_consistency)
    if name != "faiss":
        raise BackendUnavailableError(f"index version {version.name} uses an unknown vector backend {name!r}")
    return FaissStore.open(version, writable or replica, s.search_threads)


def backend_of(record: dict[str, Any] | None) -> str:
    return str((record or {}).get("backend", "faiss"))


def same_backend(record: dict[str, Any] | None, uri: str | None = None, consistency: str = "Session") -> BackendChoice:
    """Where a rebuild of a version puts its vectors: the backend (and Milvus URI) it uses."""
    name = backend_of(record)
    if name != "milvus":
        return BackendChoice(name)
    recorded = str((record or {}).get("uri") or "")
    if "://" not in recorded and not Path(recorded).is_absolute():
        recorded = ""  # a Milvus Lite folder inside the index directory: the new version's goes there too
    return BackendChoice(name, uri or recorded or None, consistency)
