"""Which FAISS index for a collection, and which search parameters reach a recall target.

Rules (inner product on unit vectors = cosine similarity):
- n <= EXACT_MAX: exact search ("Flat"); brute force is fast enough and has recall 1.
- the raw vectors fit the memory budget: IVF with an HNSW coarse quantizer and flat lists
  ("IVF{nlist}_HNSW32,Flat"), nlist ~ 4 sqrt(n); supports removal, exact distances.
- they do not fit: IVF-PQ ("IVF{nlist}_HNSW32,PQ{m}x8"), m bytes a vector with m <= d/8
  chosen so the codes fit the budget.
A FAISS factory string given by the user overrides the rule.

Tuning: the smallest nprobe (IVF) or efSearch (HNSW) whose recall@10 against exact search,
on a sample of held-out queries, reaches the target.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import faiss
import numpy as np

LOG = logging.getLogger(__name__)

EXACT_MAX = 50_000
NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
EF_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


@dataclass(frozen=True)
class IndexPlan:
    factory: str
    reason: str


def nlist_for(n: int) -> int:
    """About 4 sqrt(n) lists, a power of two, with at least ~40 training points per list."""
    target = 4 * math.sqrt(max(n, 1))
    nlist = 2 ** round(math.log2(max(target, 16)))
    return int(max(16, min(nlist, n // 40 if n >= 640 else 16)))


def plan_index(n: int, dim: int, memory_budget_bytes: int, factory: str | None = None) -> IndexPlan:
    if factory:
        return IndexPlan(factory, "given by the user")
    raw = n * dim * 4
    if n <= EXACT_MAX:
        return IndexPlan("Flat", f"{n} vectors <= {EXACT_MAX}: exact search is fast enough")
    nlist = nlist_for(n)
    if raw <= memory_budget_bytes:
        return IndexPlan(
            f"IVF{nlist}_HNSW32,Flat",
            f"{n} vectors ({raw / 2**20:.0f} MiB) fit the {memory_budget_bytes / 2**20:.0f} MiB budget",
        )
    m = dim // 8
    while m > 1 and n * m > memory_budget_bytes:
        m //= 2
    while dim % m:
        m -= 1
    return IndexPlan(
        f"IVF{nlist}_HNSW32,PQ{m}x8",
        f"{raw / 2**20:.0f} MiB of raw vectors exceed the {memory_budget_bytes / 2**20:.0f} MiB budget",
    )


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


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean |found[:k] ∩ truth[:k]| / k over queries (ids; -1 never matches)."""
    hits = 0
    for f, t in zip(found, truth, strict=True):
        hits += len(set(f[:k].tolist()) & set(t[:k].tolist()) - {-1})
    return hits / (k * len(truth))


def exact_neighbours(base: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(base.shape[1]))
    flat.add_with_ids(base, ids)
    _, found = flat.search(queries, k)
    return np.asarray(found)


def tune(
    index: faiss.Index, queries: np.ndarray, truth: np.ndarray, target: float, k: int = 10, margin: float = 0.01
) -> tuple[str | None, int | None, float]:
    """Smallest search parameter reaching `target` + `margin` recall@k: (name, value, recall).

    The margin covers the gap between the tuning queries (collection vectors, own id dropped)
    and unseen queries, measured at about half a point in bench/index.py.
    """
    target = min(1.0, target + margin)
    name = search_param_name(index)
    if name is None:
        _, found = index.search(queries, k)
        return None, None, recall_at_k(found, truth, k)
    grid: tuple[int, ...] = NPROBE_GRID if name == "nprobe" else EF_GRID
    if name == "nprobe":
        nlist = faiss.extract_index_ivf(unwrap(index)).nlist
        grid = (*(v for v in grid if v < nlist), nlist)
    best: tuple[int, float] = (grid[-1], 0.0)
    for value in grid:
        set_search_param(index, value if name == "nprobe" else max(value, k))
        _, found = index.search(queries, k)
        recall = recall_at_k(found, truth, k)
        LOG.debug("%s=%d recall@%d=%.4f", name, value, k, recall)
        if recall > best[1]:
            best = (value, recall)
        if recall >= target:
            return name, value, recall
    LOG.warning("%s never reached recall@%d %.2f (best %.4f at %d)", name, k, target, best[1], best[0])
    set_search_param(index, best[0])
    return name, best[0], best[1]
