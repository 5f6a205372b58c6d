"""Making and adjusting FAISS indexes: build from a factory string (with 64-bit ids), set
the one search parameter each kind has (nprobe for IVF, efSearch for HNSW), and search among
a subset of ids (filters)."""

from __future__ import annotations

import math

import faiss
import numpy as np


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
