"""The Milvus backend (index.milvus_index) through Milvus Lite: the same answers as brute force,
writes that survive reopening, crash leftovers cleaned, rebuilds through a new collection and an
alias switch, and clear errors. The service suites run on it too (tests/app/conftest.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import index.milvus_index as mi
from index.catalog import Catalog, CatalogFilter, NewImage
from index.duplicates import find_duplicates
from index.pipeline import BuildOptions, stage_version
from index.store import ImageIndex, load
from index.vector_store import BackendChoice, BackendUnavailableError
from index.vectors import same_backend
from index.versions import CATALOG_FILE, publish, staging_dir
from tests.conftest import clustered_vectors, free_port
from tests.index.conftest import brute_force
from tests.index.test_duplicates import naive_groups, planted


def labelled_rows(n: int, offset: int = 0) -> list[NewImage]:
    return [
        NewImage(f"img/{i}.png", f"{i:064x}", 10, 10, "even" if i % 2 == 0 else "odd")
        for i in range(offset, offset + n)
    ]


def build(root: Path, vectors: np.ndarray, factory: str | None = None, uri: str | None = None) -> ImageIndex:
    """Publish `vectors` (rows 1..n) as a Milvus-backed version of `root`; open it writable."""
    staged = staging_dir(root)
    with Catalog(staged / CATALOG_FILE) as catalog:
        ids = np.array([i for i, _ in catalog.add(labelled_rows(len(vectors)))], dtype=np.int64)
    options = BuildOptions(factory=factory, map_sample=0, backend=BackendChoice("milvus", uri))
    store, _ = stage_version(staged, vectors, ids, {"sha256": "e" * 64}, options)
    publish(root, staged)
    store.publish()
    return load(root, writable=True)


def collections(index: ImageIndex) -> set[str]:
    store = index.backend
    assert isinstance(store, mi.MilvusStore)
    return {c for c in store.client.list_collections() if c.startswith(store.alias)}


def test_search_equals_brute_force(tmp_path: Path) -> None:
    base = clustered_vectors(600, 24, 8, seed=4)
    queries = clustered_vectors(15, 24, 8, seed=5)
    index = build(tmp_path / "idx", base)
    assert index.manifest.vector_store and index.manifest.vector_store["backend"] == "milvus"
    assert index.manifest.vector_store["uri"] == mi.LITE_IN_INDEX  # travels with the index directory
    scores, ids = index.search(queries, 10)
    want_scores, want_pos = brute_force(base, queries, 10)
    for got_s, got_i, ws, wp in zip(scores, ids, want_scores, want_pos, strict=True):
        np.testing.assert_allclose(got_s, ws, atol=1e-4)
        assert set((got_i - 1).tolist()) == set(wp.tolist())
    np.testing.assert_allclose(index.vectors(np.array([3, 1])), base[[2, 0]], atol=1e-6)


@pytest.mark.parametrize(("factory", "kind"), [("HNSW16", "HNSW"), ("IVF16,Flat", "IVF_FLAT")])
def test_approximate_plans_map_to_milvus_index_types_and_record_recall(tmp_path: Path, factory: str, kind: str) -> None:
    base = clustered_vectors(3000, 16, 30, seed=6)
    index = build(tmp_path / "idx", base, factory)
    record = index.manifest.vector_store or {}
    assert record["index"]["type"] == kind
    assert index.manifest.recall_at_10 is not None and index.manifest.recall_at_10 >= 0.95  # measured through Milvus
    rng = np.random.default_rng(7)  # fresh queries near the data: perturbed collection vectors
    queries = base[rng.choice(3000, 50, replace=False)] + 0.05 * rng.normal(size=(50, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, ids = index.search(queries, 10)
    _, truth = brute_force(base, queries, 10)
    overlap = np.mean([len(set((i - 1).tolist()) & set(t.tolist())) / 10 for i, t in zip(ids, truth, strict=True)])
    assert overlap >= 0.9


@pytest.mark.parametrize("filter_ids_max", [mi.FILTER_IDS_MAX, 10])
def test_filtered_search_equals_brute_force_over_the_matching_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filter_ids_max: int
) -> None:
    """Both ways: the ids in a Milvus filter expression, and (a common filter) oversampled and filtered here."""
    monkeypatch.setattr(mi, "FILTER_IDS_MAX", filter_ids_max)
    base = clustered_vectors(400, 16, 6, seed=8)
    queries = clustered_vectors(6, 16, 6, seed=9)
    index = build(tmp_path / "idx", base)
    _, ids = index.search(queries, 7, CatalogFilter(("even",)))
    even = np.arange(0, 400, 2)
    _, pos = brute_force(base[even], queries, 7)
    assert [set(i.tolist()) for i in ids] == [set((even[p] + 1).tolist()) for p in pos]


def test_writes_survive_reopening_and_unacknowledged_vectors_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    index = build(root, clustered_vectors(100, 16, 4, seed=10))
    fresh = clustered_vectors(3, 16, 4, seed=11)
    added = index.add(fresh, labelled_rows(3, offset=1000))
    assert index.remove([1, 2]) == 2 and index.count == 101
    # A crash after Milvus took a write but before the journal did: never acknowledged.
    index.backend.add(fresh[:1], np.array([999_999], dtype=np.int64))
    assert index.backend.count == 102
    reopened = load(root, writable=True)
    assert reopened.count == 101 == reopened.catalog.count()
    _, ids = reopened.search(fresh, 1)
    assert [int(i[0]) for i in ids] == [i for i, _ in added]
    assert not {1, 2} & set(reopened.search(clustered_vectors(5, 16, 4, seed=10), 101)[1][0].tolist())


def test_rebuild_switches_the_alias_then_drops_the_old_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mi, "DROP_GRACE_S", 0.2)
    root = tmp_path / "idx"
    base = clustered_vectors(200, 16, 4, seed=12)
    index = build(root, base)
    old = index.backend
    assert isinstance(old, mi.MilvusStore) and old._alias_target() == old.collection
    staged = staging_dir(root)
    snapshot = index.snapshot(staged / CATALOG_FILE)
    index.add(clustered_vectors(1, 16, 4, seed=13), labelled_rows(1, offset=5000))  # a write during the rebuild
    ids = np.array([r.id for r in snapshot.rows], dtype=np.int64)
    options = BuildOptions(map_sample=0, backend=BackendChoice("milvus"))
    stage_version(staged, base, ids, {"sha256": "e" * 64}, options)
    assert old._alias_target() == old.collection  # built, not yet published: the alias stays
    new, carried = index.hand_over(root, staged, snapshot, None, "e" * 64, lambda _: None)
    assert carried == 1 and new.count == 201
    assert isinstance(new.backend, mi.MilvusStore) and new.backend._alias_target() == new.backend.collection
    deadline = time.monotonic() + 10
    while old.collection in collections(new) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert collections(new) == {new.backend.collection}


def test_a_failed_build_drops_its_collection_and_leaves_the_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "idx"
    index = build(root, clustered_vectors(100, 16, 4, seed=14))
    before = collections(index)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a sample search of the new index did not find its own images")

    monkeypatch.setattr("index.pipeline.check_built", broken)
    with pytest.raises(RuntimeError, match="did not find"):
        stage_version(
            staging_dir(root),
            clustered_vectors(50, 16, 4),
            np.arange(1, 51),
            {},
            BuildOptions(map_sample=0, backend=BackendChoice("milvus")),
        )
    assert collections(index) == before
    assert isinstance(index.backend, mi.MilvusStore) and index.backend._alias_target() == index.backend.collection


def test_unreachable_milvus_and_missing_collection_are_clear_errors(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendUnavailableError, match=f"cannot open Milvus at '{dead}'.*start the Milvus server"):
        build(tmp_path / "a", clustered_vectors(10, 8, 2), uri=dead)
    index = build(tmp_path / "b", clustered_vectors(10, 8, 2))
    store = index.backend
    assert isinstance(store, mi.MilvusStore)
    store.client.drop_collection(store.collection)
    with pytest.raises(BackendUnavailableError, match="has no collection"):
        load(tmp_path / "b")


def test_a_rebuild_stays_in_the_backend_and_place_the_version_records() -> None:
    inside = {"backend": "milvus", "uri": mi.LITE_IN_INDEX, "collection": "c", "alias": "a"}
    assert same_backend(inside) == BackendChoice("milvus", None)  # the new version's Lite folder: the index's
    server = {**inside, "uri": "http://milvus:19530"}
    assert same_backend(server) == BackendChoice("milvus", "http://milvus:19530")
    assert same_backend(server, "http://other:19530").uri == "http://other:19530"
    assert same_backend(None) == BackendChoice("faiss") == same_backend({"backend": "faiss", "file": "index.faiss"})


def test_duplicate_groups_on_milvus_equal_brute_force(tmp_path: Path) -> None:
    """Milvus has no unbounded range search: the duplicate finder range-searches a FAISS copy
    built like the index's plan (IVF at every list here, so exact) and must find the same groups."""
    vectors = planted()
    index = build(tmp_path / "idx", vectors, "IVF16,Flat")
    index.manifest = replace(index.manifest, search_params={"nprobe": 16})
    report = find_duplicates(index, 0.98)
    got = {frozenset(m.id for m in g.members) for g in report.groups}
    assert got == naive_groups(vectors, index.catalog.ids(), 0.98) and got
