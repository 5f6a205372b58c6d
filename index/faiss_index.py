"""The FAISS backend: build an index from a factory string (with 64-bit ids), set the one
search parameter each kind has (nprobe for IVF, efSearch for HNSW), search among a subset of
ids (filters), and FaissStore, the index.vectors.VectorStore over such an index."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.versions import INDEX_FILE

NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
EF_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


def build_faiss(vectors: np.ndarray, ids: np.ndarray, factory: str, seed: int = 0) -> faiss.Index:
    """Train (if needed) and fill an inner-product index with an id map."""
    dim = vectors.shape[1]
    inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not inner.is_trained:
        rng = np.random.default_rng(seed)
        n_train = min(len(vectors), max(50_000, 64 * getattr(faiss.extract_index_ivf(inner), "nlist", 256)))
        sample = vectors[rng.choice(len(vectors), n_train, replace=False)] if n_train < len(vectors) else vectors
        inner.train(sample)
    try:
        faiss.extract_index_ivf(inner)
        # IVF lists store 64-bit ids themselves. An IndexIDMap around them would break on
        # removal (it assumes the inner index renumbers what remains, as a flat index does).
        index = inner
    except RuntimeError:
        index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, ids)
    return index


def unwrap(index: faiss.Index) -> faiss.Index:
    """The index inside an id map (or the index itself), downcast to its concrete type."""
    inner = getattr(index, "index", None)
    return faiss.downcast_index(inner if inner is not None else index)


def set_search_param(index: faiss.Index, value: int) -> str | None:
    """Set nprobe (IVF) or efSearch (HNSW) on `index` (through an IDMap); returns its name."""
    inner = unwrap(index)
    try:
        ivf = faiss.extract_index_ivf(inner)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        ivf.nprobe = int(value)
        quantizer = faiss.downcast_index(ivf.quantizer)
        if hasattr(quantizer, "hnsw"):
            # The coarse quantizer must look at least as wide as the lists it returns.
            quantizer.hnsw.efSearch = max(64, 2 * int(value))
        return "nprobe"
    inner = faiss.downcast_index(inner)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = int(value)
        return "efSearch"
    return None


def search_param_name(index: faiss.Index) -> str | None:
    inner = unwrap(index)
    try:
        faiss.extract_index_ivf(inner)
        return "nprobe"
    except RuntimeError:
        pass
    return "efSearch" if hasattr(faiss.downcast_index(inner), "hnsw") else None


def set_threads(n: int) -> None:
    """FAISS's OpenMP threads for this process (searches and builds)."""
    faiss.omp_set_num_threads(max(1, n))


def search_among(index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of `queries` among the ids in `allowed` only (FAISS id selector), -1 padded.

    The result is the k nearest *matching* images, not the k nearest filtered down: an IVF
    index probes nprobe / (share of the index allowed) lists, so that about as many
    candidates are scored as an unfiltered search scores (all lists, i.e. exact, for a rare
    filter); HNSW widens efSearch the same way. Where that still finds fewer than k (or all
    the allowed, if fewer), the caller falls back to exact search over the allowed vectors.
    """
    share = max(len(allowed) / max(int(index.ntotal), 1), 1e-9)
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    inner = unwrap(index)
    params: faiss.SearchParameters
    try:
        ivf = faiss.extract_index_ivf(inner)
        params = faiss.SearchParametersIVF()
        params.nprobe = min(int(ivf.nlist), math.ceil(ivf.nprobe / share))
    except RuntimeError:
        if hasattr(inner, "hnsw"):
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            ef = math.ceil(max(inner.hnsw.efSearch, k) / share)
            params.efSearch = max(min(int(index.ntotal), ef), k)  # type: ignore[attr-defined]
        else:
            params = faiss.SearchParameters()
    params.sel = selector  # SWIG holds no reference: `selector` must stay alive until the search returns
    scores, ids = index.search(queries, k, params=params)
    return scores, ids


class FaissStore:
    """index.vector_store.VectorStore over a FAISS index in this process (the default backend)."""

    shared = False

    def __init__(self, index: faiss.Index, threads: int | None = None) -> None:
        self.index = index
        self.threads = threads  # OpenMP threads per search; the count holds per calling thread
        _enable_lookup_by_id(index)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, factory: str) -> FaissStore:
        return cls(build_faiss(vectors, ids, factory))

    @classmethod
    def open(cls, version: Path, writable: bool, threads: int | None = None) -> FaissStore:
        """Read a version's index file; read-only opens memory-map it where FAISS supports that."""
        path = str(version / INDEX_FILE)
        if not writable:
            try:
                return cls(faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY), threads)
            except RuntimeError:
                pass
        return cls(faiss.read_index(path), threads)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.threads is not None:
            set_threads(self.threads)
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def search_among(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.threads is not None:
            set_threads(self.threads)
        return search_among(self.index, queries, k, allowed)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.remove(ids)  # an id added again replaces its vector (journal replays)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids: np.ndarray) -> None:
        # IDSelectorArray: the only selector an IVF hashtable direct map can remove with.
        arr = np.ascontiguousarray(ids, dtype=np.int64)
        if len(arr):
            self.index.remove_ids(faiss.IDSelectorArray(len(arr), faiss.swig_ptr(arr)))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)))

    def reconcile(self, ids: list[int]) -> int:
        return 0  # rebuilt from its file and the journal at every open: it cannot hold more

    def param_name(self) -> str | None:
        return search_param_name(self.index)

    def param_grid(self) -> tuple[int, ...]:
        if self.param_name() == "nprobe":
            nlist = int(faiss.extract_index_ivf(unwrap(self.index)).nlist)
            return (*(v for v in NPROBE_GRID if v < nlist), nlist)
        return EF_GRID

    def set_param(self, value: int) -> None:
        set_search_param(self.index, value)

    def range_searchable(self) -> faiss.Index | None:
        """Flat and IVF indexes answer range searches; HNSW (a user's factory choice) does not."""
        try:
            self.index.range_search(np.zeros((1, self.dim), np.float32), 2.0)
        except RuntimeError:
            return None
        return self.index

    def record(self) -> dict[str, Any]:
        return {"backend": "faiss", "file": INDEX_FILE}

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(directory / INDEX_FILE))

    def publish(self) -> None:
        pass  # the version folder holds the index file: publishing the folder is all

    def retire(self, successor: object) -> None:
        pass  # memory is freed with the object; the old version's file stays with its folder

    def drop(self) -> None:
        pass

    def close(self) -> None:
        pass


def _enable_lookup_by_id(index: faiss.Index) -> None:
    """IVF lists need an id -> list position map to reconstruct vectors by id ("more like this")."""
    with contextlib.suppress(RuntimeError):  # not an IVF index: nothing to do
        ivf = faiss.extract_index_ivf(unwrap(index))
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
