"""Which FAISS index a collection gets (inner product on unit vectors = cosine similarity).

- n <= EXACT_MAX: exact search ("Flat"); brute force is fast enough and has recall 1.
- the raw vectors fit the memory budget: IVF with an HNSW coarse quantizer and flat lists
  ("IVF{nlist}_HNSW32,Flat"), nlist ~ 4 sqrt(n); supports removal, exact distances.
- they do not fit: IVF-PQ ("IVF{nlist}_HNSW32,PQ{m}x8"), m bytes a vector with m <= d/8
  chosen so the codes fit the budget.
A FAISS factory string given by the user overrides the rule. The defaults of every build
(the CLI's, the service's rebuild) are the constants below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXACT_MAX = 50_000
DEFAULT_MEMORY_BUDGET = 4 * 1024**3  # bytes the vectors of one index may take in memory
DEFAULT_RECALL_TARGET = 0.95  # recall@10 against exact search that tuning aims for


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
