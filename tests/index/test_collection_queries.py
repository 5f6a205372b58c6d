"""Filtered search, browsing and labels against brute force over the catalog (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.catalog import Catalog, CatalogFilter, NewImage
from index.faiss_index import FaissStore
from index.store import ImageIndex
from index.versions import Manifest
from tests.conftest import clustered_vectors
from tests.index.conftest import brute_force

# 3,000 vectors: "common" on 45 %, "rare" on 12 images, the rest "other"; uris under two folders.
N, DIM = 3000, 32


def labelled_index(tmp_path: Path, factory: str) -> tuple[ImageIndex, np.ndarray, list[NewImage]]:
    vectors = clustered_vectors(N, DIM, clusters=20, seed=3)
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(N) < 0.45, "common", "other").astype(object)
    labels[rng.choice(N, 12, replace=False)] = "rare"
    rows = [NewImage(f"{'a' if i % 3 else 'b'}/{i}.png", f"{i:064x}", 8, 8, str(labels[i])) for i in range(N)]
    catalog = Catalog(tmp_path / "catalog.sqlite")
    ids = np.array([i for i, _ in catalog.add(rows)], dtype=np.int64)
    manifest = Manifest(version="t", encoder={}, dim=DIM, count=N, index_type=factory)
    index = ImageIndex(FaissStore.build(vectors, ids, factory), catalog, manifest, None)
    if factory.startswith("IVF"):
        index.backend.set_param(4)  # 4 of 64 lists: an unfiltered search sees ~6 % of the index
    return index, vectors, rows


def reference(
    vectors: np.ndarray, rows: list[NewImage], where: CatalogFilter, queries: np.ndarray, k: int
) -> list[list[int]]:
    """Brute force over the rows the filter selects (ids are 1-based positions)."""
    keep = np.array([(not where.labels or r.label in where.labels)
                     and (where.uri_prefix is None or r.uri.startswith(where.uri_prefix)) for r in rows])  # fmt: skip
    positions = np.flatnonzero(keep)
    _, order = brute_force(vectors[positions], queries, k)
    return [[int(positions[j]) + 1 for j in row] for row in order]


@pytest.mark.parametrize("factory", ["Flat", "IVF64,Flat", "HNSW16"])
@pytest.mark.parametrize(
    "where",
    [CatalogFilter(("common",)), CatalogFilter(("rare",)), CatalogFilter(("rare", "common")),
     CatalogFilter(uri_prefix="b/"), CatalogFilter(("rare",), "a/")],
    ids=["common", "rare", "two-labels", "uri-prefix", "label-and-prefix"],
)  # fmt: skip
def test_filtered_search_returns_the_k_nearest_matching_images(
    tmp_path: Path, factory: str, where: CatalogFilter
) -> None:
    index, vectors, rows = labelled_index(tmp_path, factory)
    queries = vectors[::150] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = 10
    _, found = index.search(queries, k, where)
    expected = reference(vectors, rows, where, queries, k)
    for got, want in zip(found, expected, strict=True):
        assert len(got) == len(want)  # never "k nearest filtered down to fewer"
        labels_ok = {rows[int(i) - 1].label for i in got} <= (set(where.labels) or {"common", "other", "rare"})
        assert labels_ok and all(rows[int(i) - 1].uri.startswith(where.uri_prefix or "") for i in got)
        overlap = len(set(got.tolist()) & set(want)) / len(want)
        # Exact index, or a filter rare enough to be searched exhaustively: the reference itself.
        # A common filter on IVF is approximate like any IVF search: most of the true top-k.
        assert overlap == 1.0 if factory == "Flat" or "rare" in where.labels else overlap >= 0.8


def test_rows_the_approximate_search_under_fills_are_answered_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, vectors, rows = labelled_index(tmp_path, "IVF64,Flat")

    def under_filled(queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1, np.int64)

    monkeypatch.setattr(index.backend, "search_among", under_filled)
    where = CatalogFilter(("common",))
    _, found = index.search(vectors[:3], 7, where)
    assert [f.tolist() for f in found] == reference(vectors, rows, where, vectors[:3], 7)


def test_a_filter_that_matches_nothing_returns_nothing(tmp_path: Path) -> None:
    index, vectors, _ = labelled_index(tmp_path, "Flat")
    scores, ids = index.search(vectors[:2], 5, CatalogFilter(("no such label",)))
    assert [len(i) for i in ids] == [0, 0] and [len(s) for s in scores] == [0, 0]


def test_paging_visits_every_matching_row_once(tmp_path: Path) -> None:
    index, _, rows = labelled_index(tmp_path, "Flat")
    where = CatalogFilter(("common", "rare"), "a/")
    seen, cursor = [], 0
    while True:
        page = index.catalog.page(where, cursor, 97)
        seen.extend(r.id for r in page)
        if len(page) < 97:
            break
        cursor = page[-1].id
    want = [i + 1 for i, r in enumerate(rows) if r.label in ("common", "rare") and r.uri.startswith("a/")]
    assert seen == want
    counts = dict(index.catalog.labels())
    assert counts == {lab: sum(r.label == lab for r in rows) for lab in ("common", "other", "rare")}


def test_uri_prefix_is_literal_not_a_pattern(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    catalog.add([NewImage("50%_off/a.png", "1" * 64, 1, 1), NewImage("50x_off/b.png", "2" * 64, 1, 1)])
    assert [r.uri for r in catalog.page(CatalogFilter(uri_prefix="50%_"), 0, 10)] == ["50%_off/a.png"]


def test_a_write_is_seen_by_the_next_filtered_search(tmp_path: Path) -> None:
    """The filter's ids are cached; an add or remove must not be served from a stale answer."""
    index, vectors, _ = labelled_index(tmp_path, "Flat")
    where = CatalogFilter(("rare",))
    query = vectors[:1]
    _, before = index.search(query, 50, where)
    assert len(before[0]) == 12
    ((new_id, _),) = index.add(query, [NewImage("new.png", "f" * 64, 8, 8, "rare")])
    _, after = index.search(query, 50, where)
    assert len(after[0]) == 13 and after[0][0] == new_id
    index.remove([new_id])
    _, again = index.search(query, 50, where)
    assert sorted(again[0].tolist()) == sorted(before[0].tolist())
