"""The vector-store seam: what the index (index.store), the build (index.pipeline) and tuning
need from the engine that holds the vectors, and which engine a new version uses.

Two backends implement it: FAISS in this process (index.faiss_index, the default) and Milvus
(index.milvus_index: Milvus Lite in a file, or a Milvus server/cluster by URI); index.vectors
opens and builds them. The interface sits below both, so neither imports the chooser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

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
    """Which engine holds a new version's vectors: `name` in BACKENDS; for Milvus, its `uri` and the
    read `consistency` level (Session: a process sees its own writes at once, others within a second)."""

    name: str = "faiss"
    uri: str | None = None
    consistency: str = "Session"

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"unknown vector backend {self.name!r}: use one of {', '.join(BACKENDS)}")

    @classmethod
    def of(cls, name: str | None, uri: str | None = None, consistency: str | None = None) -> BackendChoice:
        """From a flag or setting: None or empty means FAISS; case and spaces do not matter."""
        return cls((name or "faiss").strip().lower(), uri or None, consistency or "Session")


@dataclass(frozen=True)
class StoreSettings:
    """How a served store is opened and searched, each knob for the backend it belongs to.

    milvus_uri: overrides the URI a Milvus version recorded (a server seen under another address);
    milvus_consistency: Milvus's read consistency (Session: a process sees its own writes at once);
    search_threads: FAISS's OpenMP threads in each searching thread (None: FAISS's default).
    """

    milvus_uri: str | None = None
    milvus_consistency: str = "Session"
    search_threads: int | None = None
