"""The collection map: neighbourhoods kept, sampling, the spread warning, stored with the version."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.atlas import MAP_FILE, compute_map, load_map, save_map
from index.store import load
from index.versions import read_manifest


def separated(n_per: int = 80, clusters: int = 3, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 3
    x = np.concatenate([c + 0.3 * rng.normal(size=(n_per, dim)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(clusters), n_per)


def test_clusters_stay_together_on_the_map() -> None:
    vectors, cluster = separated()
    ids = np.arange(100, 100 + len(vectors), dtype=np.int64)
    m = compute_map(vectors, ids)
    assert m.method.startswith("neighbour-graph layout") and len(m.ids) == len(ids) and m.warning is None
    assert m.xy.min() >= 0 and m.xy.max() <= 1 and np.isclose(m.xy.max(axis=0).max(), 1.0)
    d = ((m.xy[:, None, :] - m.xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    assert (cluster[nearest] == cluster).mean() > 0.95


def test_a_large_collection_is_mapped_through_a_fixed_sample() -> None:
    vectors, _ = separated(n_per=100)
    ids = np.arange(len(vectors), dtype=np.int64) * 7
    a, b = compute_map(vectors, ids, sample=120), compute_map(vectors, ids, sample=120)
    assert len(a.ids) == 120 and set(a.ids) <= set(ids) and np.array_equal(a.ids, b.ids)
    assert a.collection_size == 300 and "sample of 120 of 300" in a.method


def test_tiny_collections_and_a_collapsed_space() -> None:
    one = compute_map(np.ones((1, 4), np.float32) / 2, np.array([5]))
    assert one.xy.tolist() == [[0.5, 0.5]]
    few, _ = separated(n_per=4)
    assert compute_map(few, np.arange(12)).method == "first two principal components"
    rng = np.random.default_rng(0)
    collapsed = np.ones((200, 64)) + 1e-4 * rng.normal(size=(200, 64))
    collapsed /= np.linalg.norm(collapsed, axis=1, keepdims=True)
    assert "collapse" in (compute_map(collapsed.astype(np.float32), np.arange(200)).warning or "")


def test_saved_and_loaded(tmp_path: Path) -> None:
    vectors, _ = separated(n_per=30)
    m = compute_map(vectors, np.arange(90, dtype=np.int64))
    save_map(tmp_path, m)
    back = load_map(tmp_path)
    assert back is not None and np.array_equal(back.ids, m.ids) and np.allclose(back.xy, m.xy)
    assert back.meta() == m.meta()
    assert load_map(tmp_path / "nowhere") is None


def test_every_built_version_has_its_map_and_a_commit_keeps_it(built: Path) -> None:
    manifest = read_manifest(built)
    assert manifest["map"]["collection_size"] == manifest["count"] and "map" in manifest["seconds"]
    index = load(built, writable=True)
    assert index.map is not None and sorted(index.map.ids.tolist()) == index.catalog.ids()
    index.commit(built)
    assert (built / "versions" / index.version / MAP_FILE).exists()
    index.close()


def test_a_version_built_without_a_map_says_so(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from index.build import build_index
    from index.pipeline import BuildOptions
    from model.embedding.embed import load_encoder
    from tests.app.conftest import make_settings, wait_ready

    root = tmp_path / "idx"
    build_index(load_encoder(tiny_encoder), image_folder, root, options=BuildOptions(map_sample=0), progress=False)
    assert "map" not in read_manifest(root) and not list(root.rglob(MAP_FILE))
    with TestClient(create_app(make_settings(tiny_encoder, root))) as client:
        wait_ready(client)
        r = client.get("/map")
        assert r.status_code == 404 and "no map" in r.json()["detail"]
