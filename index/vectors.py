"""The vector-store seam: what the index (index.store), the build (index.pipeline) and tuning
need from the engine that holds the vectors, and how a backend is chosen.

Two backends implement it: FAISS in this process (index.faiss_index, the default) and Milvus
(index.milvus_index: Milvus Lite in a file, or a Milvus server/cluster by URI). The catalog,
image store, journal and versions stay the same for both; only the vectors move.

A version's manifest records its store (`vector_store`: backend name and, for Milvus, URI,
collection and alias), so serving needs no flag: `open_store` reopens what was built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from index.plan import IndexPlan

BACKEND_ENV = "LATENT_SEARCH_VECTOR_BACKEND"
MILVUS_URI_ENV = "LATENT_SEARCH_MILVUS_URI"
BACKENDS = ("faiss", "milvus")


class BackendUnavailableError(RuntimeError):
    """The configured vector backend cannot be used: the message says what to install or start."""


class VectorStore(Protocol):
    """Vectors by 64-bit id, searched by inner product (cosine on unit vectors).

    `search` and `search_among` return (scores, ids) arrays of shape (Q, k), best first,
    padded with id -1. `add` replaces an id that is already present, so replaying a journal
    is harmless. The caller (ImageIndex) serialises writes against searches.
    """

    # True when other processes see this store's vectors (Milvus): a read replica leaves
    # writing them to the writer and only follows the catalog.
    shared: bool

    @property
    def dim(self) -> int: ...

    @property
    def count(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def search_among(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def reconstruct(self, ids: np.ndarray) -> np.ndarray: ...

    def reconcile(self, ids: list[int]) -> int:
        """Keep only vectors whose id is in `ids` (the catalog, after a crash); returns how many went."""
        ...

    # Tuning (index.tuning): the one search parameter, if the index kind has one.
    def param_name(self) -> str | None: ...

    def param_grid(self) -> tuple[int, ...]: ...

    def set_param(self, value: int) -> None: ...

    def range_searchable(self) -> faiss.Index | None:
        """A FAISS index that answers range searches over the live vectors, or None (the
        duplicate finder then range-searches an exact copy of the vectors)."""
        ...

    def record(self) -> dict[str, Any]:
        """What the manifest keeps so that `open_store` finds this store again."""
        ...

    def save(self, directory: Path) -> None:
        """Write what a version folder must hold for this store (the FAISS file; nothing for Milvus)."""
        ...

    def publish(self) -> None:
        """The version holding this store has just become the current one."""
        ...

    def retire(self, successor: VectorStore) -> None:
        """A newer version replaced this one: let go of what only this one uses."""
        ...

    def drop(self) -> None:
        """Discard a store that was never published (a failed build)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendChoice:
    """Which engine holds a new version's vectors: `name` in BACKENDS, `uri` for Milvus."""

    name: str = "faiss"
    uri: str | None = None

    @classmethod
    def from_env(cls, name: str | None = None, uri: str | None = None) -> BackendChoice:
        """Flags first, then LATENT_SEARCH_VECTOR_BACKEND / LATENT_SEARCH_MILVUS_URI, then FAISS."""
        chosen = (name or os.environ.get(BACKEND_ENV) or "faiss").strip().lower()
        if chosen not in BACKENDS:
            raise ValueError(f"unknown vector backend {chosen!r}: use one of {', '.join(BACKENDS)}")
        return cls(chosen, uri or os.environ.get(MILVUS_URI_ENV) or None)


def build_store(
    choice: BackendChoice, staged: Path, vectors: np.ndarray, ids: np.ndarray, plan: IndexPlan
) -> VectorStore:
    """A new store for the version being staged in `staged`, filled with (vectors, ids)."""
    if choice.name == "milvus":
        from index.milvus_index import MilvusStore  # pymilvus is only imported when used

        return MilvusStore.build(choice.uri, staged, vectors, ids, plan)
    from index.faiss_index import FaissStore

    return FaissStore.build(vectors, ids, plan.factory)


def open_store(
    version: Path, record: dict[str, Any] | None, writable: bool, uri: str | None = None, replica: bool = False
) -> VectorStore:
    """Reopen the store a version's manifest records (`record`; None: a FAISS file, as before
    the seam existed). `uri` overrides the Milvus URI recorded at build time. `writable`: the
    writer's open (cleans up after crashes); `replica`: a read replica's (index.replica)."""
    name = (record or {}).get("backend", "faiss")
    if name == "milvus":
        from index.milvus_index import MilvusStore

        root = version.parent.parent  # ROOT/versions/<version>
        return MilvusStore.open(root, record or {}, uri or os.environ.get(MILVUS_URI_ENV) or None, writable)
    if name != "faiss":
        raise BackendUnavailableError(f"index version {version.name} uses an unknown vector backend {name!r}")
    from index.faiss_index import FaissStore

    return FaissStore.open(version, writable or replica)


def backend_of(record: dict[str, Any] | None) -> str:
    return str((record or {}).get("backend", "faiss"))


def same_backend(record: dict[str, Any] | None, uri: str | None = None) -> BackendChoice:
    """Where a rebuild of a version puts its vectors: the backend (and Milvus URI) it uses."""
    name = backend_of(record)
    if name != "milvus":
        return BackendChoice(name)
    recorded = str((record or {}).get("uri") or "")
    if "://" not in recorded and not Path(recorded).is_absolute():
        recorded = ""  # a Milvus Lite folder inside the index directory: the new version's goes there too
    return BackendChoice(name, uri or recorded or None)
