"""The open index (index.store) against brute force: search, ids across writes, IVF removal, encoder checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.build import build_index
from index.pipeline import BuildOptions
from index.store import EncoderMismatchError, load
from index.versions import IndexNotFoundError
from model.embedding.embed import load_encoder
from tests.conftest import clustered_vectors
from tests.index.conftest import brute_force, make_index, rows_for


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
    build_index(
        load_encoder(tiny_encoder), image_folder, root, options=BuildOptions(factory="IVF4,Flat"), progress=False
    )
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


def test_mismatched_encoder_and_missing_index_are_refused(built: Path, tmp_path: Path) -> None:
    with pytest.raises(EncoderMismatchError, match="rebuild"):
        load(built, encoder_checksum="0" * 64)
    with pytest.raises(IndexNotFoundError, match="index build"):
        load(tmp_path / "nothing")
