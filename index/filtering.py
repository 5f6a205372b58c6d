"""What filtered search needs beside FAISS: the ids a filter selects (cached per index state)
and the exact answer over them, for rows an approximate selector search under-fills."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from index.catalog import Catalog, CatalogFilter

CACHE_SIZE = 16  # filters whose ids are kept


class MatchingIds:
    """The ids a filter selects in `catalog`, the last CACHE_SIZE filters kept per write count:
    the catalog query costs ~10 ms at 60,000 images, the cached answer nothing."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._cache: OrderedDict[tuple[int, CatalogFilter], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # readers share the index's read lock, not this cache

    def get(self, where: CatalogFilter, generation: int) -> np.ndarray:
        key = (generation, where)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        found = np.array(self.catalog.matching_ids(where), np.int64)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return found


def exact_among(stored: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k (scores, ids) of `queries` over the vectors `stored` with ids `ids`."""
    sims = queries @ stored.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, top, axis=1), ids[top]
