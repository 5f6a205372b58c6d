"""Tuning search parameters (index.tuning) to a recall target, checked on queries it was not tuned on."""

from __future__ import annotations

import numpy as np

from index.faiss_index import FaissStore
from index.tuning import recall_at_k, tune_index
from tests.conftest import clustered_vectors
from tests.index.conftest import brute_force


def test_tuned_ivf_meets_recall_on_queries_it_was_not_tuned_on() -> None:
    base = clustered_vectors(30_000, 32, 300, seed=1)
    ids = np.arange(30_000, dtype=np.int64)
    store = FaissStore.build(base, ids, "IVF256_HNSW32,Flat")
    report = tune_index(store, base, ids, target=0.95)
    assert report["recall_at_10"] >= 0.95 and report["search_params"]["nprobe"] < 256
    # Fresh queries near the data (not the tuning sample): perturbed collection vectors.
    rng = np.random.default_rng(7)
    fresh = base[rng.choice(30_000, 500, replace=False)] + 0.05 * rng.normal(size=(500, 32)).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    _, truth = brute_force(base, fresh, 10)
    _, found = store.search(fresh, 10)
    assert recall_at_k(found, truth, 10) >= 0.93  # unseen queries: within noise of the target


def test_hnsw_gets_its_ef_search_tuned() -> None:
    base = clustered_vectors(5000, 16, 50, seed=3)
    ids = np.arange(5000, dtype=np.int64)
    store = FaissStore.build(base, ids, "HNSW16")
    report = tune_index(store, base, ids, target=0.99)
    assert set(report["search_params"]) == {"efSearch"} and report["recall_at_10"] >= 0.99
