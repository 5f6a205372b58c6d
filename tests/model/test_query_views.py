"""Query views (model.embedding.query_views): the crops, the squares, the JPEG draft, and the merge of the
views' hits checked against a brute-force max over views."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from model.embedding.images import open_image, to_square
from model.embedding.query_views import (
    QUERY_VIEWS,
    WHOLE,
    crop_views,
    decode_views,
    merge_views,
    regroup,
    search_views,
    view_squares,
)


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _exact(gallery: np.ndarray) -> object:
    """A brute-force search over `gallery` (ids are row numbers), FAISS's (scores, ids) per row."""

    def search(queries: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        sims = queries @ gallery.T
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return [s[o] for s, o in zip(sims, order, strict=True)], [o.astype(np.int64) for o in order]

    return search


def test_the_views_are_the_whole_image_then_bands_and_the_middle() -> None:
    img = Image.new("RGB", (200, 100))
    sizes = [v.size for v in crop_views(img)]
    assert sizes[0] == (200, 100) and crop_views(img)[0] is img
    assert sizes[1] == sizes[2] == (200, 85)  # a 15 % band off the bottom, then off the top
    w, h = sizes[3]
    assert abs(w * h / (200 * 100) - 0.6) < 0.02 and abs(w / h - 2) < 0.05  # the middle 60 %, same shape
    assert [v.size for v in crop_views(Image.new("RGB", (1, 1)))] == [(1, 1)] * len(QUERY_VIEWS)


def test_the_bottom_band_view_leaves_a_caption_out() -> None:
    arr = np.full((100, 100, 3), 200, np.uint8)
    arr[88:] = 0  # a black bar across the bottom 12 %
    top = np.asarray(crop_views(Image.fromarray(arr))[1])
    assert top.min() == 200 and top.shape == (85, 100, 3)


def test_the_whole_view_is_what_the_index_holds() -> None:
    rng = np.random.default_rng(0)
    img = ImageOps.expand(Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)), 6, fill="white")
    squares = view_squares(img, 24)
    assert squares.shape == (len(QUERY_VIEWS), 24, 24, 3) and squares.dtype == np.uint8
    np.testing.assert_array_equal(squares[0], to_square(img, 24))
    np.testing.assert_array_equal(view_squares(img, 24, (WHOLE,))[0], to_square(img, 24))


def test_a_jpeg_is_drafted_no_smaller_than_the_smallest_view_needs() -> None:
    rng = np.random.default_rng(1)
    big = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((1024, 1024))
    buf = io.BytesIO()
    big.save(buf, format="JPEG")
    opened = open_image(buf.getvalue())
    views = decode_views(opened, 128)
    assert views.shape == (len(QUERY_VIEWS), 128, 128, 3)
    # The middle view (77 % of a side) needs >= 166 px, so libjpeg may go to 1/4 (256 px), not 1/8.
    assert min(opened.size) >= 128 / 0.6**0.5


def test_merge_keeps_each_id_once_at_its_best_score() -> None:
    scores = [np.array([0.9, 0.5, 0.4]), np.array([0.95, 0.8, 0.1])]
    ids = [np.array([3, 1, 7]), np.array([1, 3, 2])]
    s, i = merge_views(scores, ids, 3)
    assert i.tolist() == [1, 3, 7] and np.allclose(s, [0.95, 0.9, 0.4])
    s, i = merge_views([np.empty(0, np.float32)], [np.empty(0, np.int64)], 5)
    assert len(s) == len(i) == 0


@pytest.mark.parametrize("views", [1, 4])
def test_search_views_matches_a_brute_force_max_over_views(views: int) -> None:
    rng = np.random.default_rng(views)
    gallery = _unit(rng, 300, 16)
    queries = [_unit(rng, views, 16) for _ in range(9)]
    k = 10
    scores, ids = search_views(_exact(gallery), queries, k)  # type: ignore[arg-type]
    for q, s, i in zip(queries, scores, ids, strict=True):
        best = (q @ gallery.T).max(axis=0)  # each image at its best view's cosine
        want = np.argsort(-best, kind="stable")[:k]
        assert i.tolist() == want.tolist()
        np.testing.assert_allclose(s, best[want], rtol=1e-6)
    assert search_views(_exact(gallery), [], k) == ([], [])  # type: ignore[arg-type]


def test_regroup_cuts_a_batched_result_back_per_query() -> None:
    parts = [np.zeros((3, 2)), np.zeros((1, 2)), np.zeros((4, 2))]
    flat = np.arange(8)
    assert [g.tolist() for g in regroup(flat, parts)] == [[0, 1, 2], [3], [4, 5, 6, 7]]
    assert regroup(list("abcdefgh"), parts) == [["a", "b", "c"], ["d"], ["e", "f", "g", "h"]]
