"""The FAISS store against brute force; tuning, persistence, ids, crashes, encoder checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.build import build_faiss, build_index, tune_index
from index.catalog import NewImage
from index.choose import plan_index, recall_at_k
from index.store import (
    EncoderMismatchError,
    ImageIndex,
    IndexNotFoundError,
    clean_staging,
    load,
    read_manifest,
    staging_dir,
)
from model.embed import load_encoder
from tests.conftest import clustered_vectors


def brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries.astype(np.float64) @ base.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


def rows_for(n: int, offset: int = 0) -> list[NewImage]:
    return [NewImage(f"img/{i}.png", f"{i:064x}", 10, 10, None) for i in range(offset, offset + n)]


def make_index(tmp_path: Path, vectors: np.ndarray, factory: str = "Flat") -> ImageIndex:
    from index.catalog import Catalog

    catalog = Catalog(tmp_path / "catalog.sqlite")
    ids = np.array([i for i, _ in catalog.add(rows_for(len(vectors)))], dtype=np.int64)
    return ImageIndex(build_faiss(vectors, ids, factory), catalog, {"version": "test"}, None)


@pytest.mark.parametrize(("n", "k"), [(50, 1), (500, 10), (2000, 37)])
def test_exact_search_equals_brute_force(tmp_path: Path, n: int, k: int) -> None:
    base = clustered_vectors(n, 24, 8, seed=n)
    queries = clustered_vectors(20, 24, 8, seed=n + 1)
    index = make_index(tmp_path, base)
    scores, ids = index.search(queries, k)
    want_scores, want_pos = brute_force(base, queries, k)
    for got_s, got_i, ws, wp in zip(scores, ids, want_scores, want_pos, strict=True):
        np.testing.assert_allclose(got_s, ws, atol=1e-5)
        # Ids are catalog ids (1-based rows here); equal scores may swap order.
        same = np.isclose(ws[:, None], ws[None, :], atol=1e-6)
        for j, found in enumerate(got_i):
            assert found - 1 in wp[same[j]]


def test_padding_is_dropped_when_k_exceeds_the_collection(tmp_path: Path) -> None:
    index = make_index(tmp_path, clustered_vectors(5, 8, 2))
    _, ids = index.search(clustered_vectors(2, 8, 2, seed=9), 50)
    assert [len(i) for i in ids] == [5, 5] and all((i >= 0).all() for i in ids)
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 7), np.float32), 3)


def test_tuned_ivf_meets_recall_on_queries_it_was_not_tuned_on() -> None:
    base = clustered_vectors(30_000, 32, 300, seed=1)
    ids = np.arange(30_000, dtype=np.int64)
    index = build_faiss(base, ids, "IVF256_HNSW32,Flat")
    report = tune_index(index, base, ids, target=0.95)
    assert report["recall_at_10"] >= 0.95 and report["search_params"]["nprobe"] < 256
    # Fresh queries near the data (not the tuning sample): perturbed collection vectors.
    rng = np.random.default_rng(7)
    fresh = base[rng.choice(30_000, 500, replace=False)] + 0.05 * rng.normal(size=(500, 32)).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    _, truth = brute_force(base, fresh, 10)
    _, found = index.search(fresh, 10)
    assert recall_at_k(found, truth, 10) >= 0.93  # unseen queries: within noise of the target


def test_hnsw_gets_its_ef_search_tuned() -> None:
    base = clustered_vectors(5000, 16, 50, seed=3)
    ids = np.arange(5000, dtype=np.int64)
    index = build_faiss(base, ids, "HNSW16")
    report = tune_index(index, base, ids, target=0.99)
    assert set(report["search_params"]) == {"efSearch"} and report["recall_at_10"] >= 0.99


def test_plan_follows_size_and_budget() -> None:
    assert plan_index(10_000, 512, 2**30).factory == "Flat"
    assert plan_index(1_000_000, 512, 4 * 2**30).factory.endswith(",Flat")
    assert "PQ" in plan_index(1_000_000, 512, 256 * 2**20).factory
    assert plan_index(10, 4, 1, factory="HNSW32").factory == "HNSW32"


@pytest.fixture()
def built(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> Path:
    root = tmp_path / "idx"
    build_index(load_encoder(tiny_encoder), image_folder, root, progress=False)
    return root


def test_build_save_load_round_trip(built: Path, tiny_encoder: Path, image_folder: Path) -> None:
    manifest = read_manifest(built)
    assert manifest["count"] == 54 and manifest["index_type"] == "Flat" and manifest["dim"] == 32
    assert manifest["recall_at_10"] == 1.0
    encoder = load_encoder(tiny_encoder)
    index = load(built, encoder_checksum=encoder.checksum)
    queries = encoder.embed_bytes([p.read_bytes() for p in sorted(image_folder.rglob("*.png"))[:4]])
    first = index.search(queries, 5)
    again = load(built).search(queries, 5)
    for a, b in zip(first[1], again[1], strict=True):
        assert np.array_equal(a, b)
    # An image searched for finds itself first with cosine ~1.
    assert all(s[0] > 0.999 for s in first[0])
    rows = index.rows([int(i) for i in first[1][0]])
    assert all(r.uri.startswith(("train/", "test/")) and r.width == 32 for r in rows.values())


def test_duplicates_and_unreadable_files_in_build(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    first = next(iter(sorted(data.rglob("*.png"))))
    (data / "copy.png").write_bytes(first.read_bytes())
    (data / "bad.jpg").write_bytes(b"nope")
    report = build_index(load_encoder(tiny_encoder), data, tmp_path / "idx", progress=False)
    assert report.manifest["count"] == 54
    assert report.manifest["duplicates"] == 1 and report.manifest["skipped_unreadable"] == 1


def test_ids_stay_stable_across_add_and_remove(built: Path) -> None:
    index = load(built, writable=True)
    before = {r.id: r.uri for r in index.catalog.rows()}
    vec = np.eye(1, index.dim, dtype=np.float32)
    ((new_id, created),) = index.add(vec, rows_for(1, offset=10**6))
    assert created and new_id > max(before)
    ((same_id, created_again),) = index.add(vec, rows_for(1, offset=10**6))
    assert same_id == new_id and not created_again and index.count == 55
    gone = sorted(before)[:3]
    assert index.remove(gone) == 3 and index.count == 52
    after = {r.id: r.uri for r in index.catalog.rows()}
    assert all(after[i] == before[i] for i in before if i not in gone)
    _, ids = index.search(vec, 52)
    assert not set(gone) & set(ids[0].tolist()) and ids[0][0] == new_id
    version = index.commit(built)
    reopened = load(built)
    assert reopened.version == version and reopened.count == 52
    assert {r.id for r in reopened.catalog.rows()} == set(after)


def test_ivf_index_removes_reconstructs_and_replays(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> None:
    # Real collections above 50k images get IVF; removal and "more like this" must work there too.
    root = tmp_path / "ivf"
    build_index(load_encoder(tiny_encoder), image_folder, root, factory="IVF4,Flat", progress=False)
    index = load(root, writable=True)
    ids = sorted(r.id for r in index.catalog.rows())
    kept = index.vectors(np.array(ids[5:8]))
    assert index.remove(ids[:3]) == 3 and index.count == 51
    np.testing.assert_allclose(index.vectors(np.array(ids[5:8])), kept)
    _, found = index.search(kept, 51)
    assert not set(ids[:3]) & set(np.concatenate(found).tolist())
    index.close()
    again = load(root, writable=True)  # the journalled removal replays onto the IVF index
    assert again.count == 51 and again.remove([ids[3]]) == 1 and again.count == 50


def test_crash_during_build_leaves_previous_version(
    built: Path, tiny_encoder: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = read_manifest(built)["version"]
    import index.build as build_mod

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("simulated crash while writing the index")

    monkeypatch.setattr(build_mod.faiss, "write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(load_encoder(tiny_encoder), image_folder, built, progress=False)
    # A harder crash: a process killed mid-build leaves a staging folder behind.
    leftover = staging_dir(built)
    (leftover / "index.faiss").write_bytes(b"half")
    assert load(built).version == before
    assert clean_staging(built) == 1 and not leftover.exists()


def test_mismatched_encoder_and_missing_index_are_refused(built: Path, tmp_path: Path) -> None:
    with pytest.raises(EncoderMismatchError, match="rebuild"):
        load(built, encoder_checksum="0" * 64)
    with pytest.raises(IndexNotFoundError, match="index build"):
        load(tmp_path / "nothing")
