"""The map's layout against naive references: the fuzzy neighbour graph by loops, and
neighbourhoods kept better than the first two principal components keep them."""

from __future__ import annotations

import numpy as np
import pytest

from index.layout import layout, neighbour_graph
from tests.conftest import clustered_vectors


def naive_graph(x: np.ndarray, k: int) -> dict[tuple[int, int], float]:
    """UMAP's memberships by loops: all distances, sorted; sigma by bisection a point; fuzzy union."""
    n = len(x)
    d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0)).astype(np.float64)
    member: dict[tuple[int, int], float] = {}
    for i in range(n):
        others = [j for j in np.argsort(d[i], kind="stable") if j != i][:k]
        dist = d[i, others]
        rho = dist[0]
        low, high = 0.0, np.inf
        sigma = 1.0
        for _ in range(64):
            total = np.exp(-np.maximum(dist - rho, 0) / sigma).sum()
            if total > np.log2(k):
                high = sigma
            else:
                low = sigma
            sigma = sigma * 2 if np.isinf(high) else (low + high) / 2
        for j, dj in zip(others, dist, strict=True):
            member[(i, int(j))] = float(np.exp(-max(dj - rho, 0) / sigma))
    fuzzy = {}
    for (i, j), w in member.items():
        back = member.get((j, i), 0.0)
        fuzzy[(min(i, j), max(i, j))] = w + back - w * back
    return fuzzy


def test_the_neighbour_graph_equals_the_loop_reference() -> None:
    x = clustered_vectors(120, 16, clusters=5, seed=3)
    head, tail, weight = neighbour_graph(x, 7)
    got = {(int(a), int(b)): float(w) for a, b, w in zip(head, tail, weight, strict=True)}
    want = naive_graph(x, 7)
    assert got.keys() == want.keys()
    assert all(abs(got[e] - want[e]) < 1e-4 for e in want)
    assert all(a < b for a, b in got)


def _kept(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Share of each point's k nearest neighbours in x that are among its k nearest in y (brute force)."""

    def nearest(z: np.ndarray) -> np.ndarray:
        d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return np.argsort(d, axis=1)[:, :k]

    a, b = nearest(np.asarray(x, np.float64)), nearest(np.asarray(y, np.float64))
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(a, b, strict=True)]))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_layout_keeps_clusters_and_neighbours(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clusters, per = 12, 50
    centres = rng.normal(size=(clusters, 48))
    label = np.repeat(np.arange(clusters), per)
    x = centres[label] + 0.5 * rng.normal(size=(len(label), 48))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y = layout(x, seed=seed)
    assert y.shape == (len(x), 2) and np.isfinite(y).all()
    d = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (label[d.argmin(axis=1)] == label).mean() > 0.95  # a 2-D nearest neighbour from the same cluster
    assert np.array_equal(y, layout(x, seed=seed))  # the same vectors and seed give the same map


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rolled_sheet_keeps_its_neighbours(seed: int) -> None:
    """A swiss roll turned into 48-D: two principal components fold it over itself; the layout
    keeps most of each point's 10 nearest neighbours (scikit-learn's t-SNE keeps 0.86 of them)."""
    rng = np.random.default_rng(seed)
    t, h = 1.5 * np.pi * (1 + 2 * rng.random(800)), 20 * rng.random(800)
    roll = np.stack([t * np.cos(t), h, t * np.sin(t)], axis=1)
    turn = np.linalg.qr(rng.normal(size=(48, 48)))[0]
    x = (np.concatenate([roll, 0.05 * rng.normal(size=(800, 45))], axis=1) @ turn).astype(np.float32)
    centred = x - x.mean(axis=0)
    pca = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    kept, by_pca = _kept(x, layout(x, seed=seed)), _kept(x, pca)
    assert kept > 0.65 and kept > by_pca + 0.15, (kept, by_pca)
