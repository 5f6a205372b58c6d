"""Query views: a query image is searched as itself and as a few crops of itself; an indexed
image ranks by the view that matches it best.

An edited copy often holds its original only in part: a caption bar, a banner or a watermark
strip across the top or bottom, the black corners a rotation leaves, a frame of clutter around
the middle. The index keeps one vector per image (the whole image, `model.embedding.images.to_square`);
the query is embedded whole and as crops that leave such additions out, every view is
searched, and each hit keeps its best view's cosine (`merge_views`). The whole view comes
first, so a query with no such edit finds what it found before unless a crop matches another
image better. Measured on CIFAR-10, Fashion-MNIST and photographs: BENCHMARKS.md, section
"Query views". Used by the service's searches by upload, by the copy-detection benchmark and by
the label-free encoder check (model.evaluation.copies), so the three measure the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence, Sized
from typing import Any, Protocol, TypeVar

import numpy as np
from PIL import Image

from model.embedding.frames import trim_frame
from model.embedding.images import square_resize, to_rgb

Box = tuple[float, float, float, float]  # left, top, right, bottom, as fractions of the width / height
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)
_CENTRE = (1 - math.sqrt(0.6)) / 2  # a centred crop keeping 60 % of the area
QUERY_VIEWS: tuple[Box, ...] = (
    WHOLE,
    (0.0, 0.0, 1.0, 0.85),  # without a band across the bottom (caption, banner, watermark)
    (0.0, 0.15, 1.0, 1.0),  # without a band across the top
    (_CENTRE, _CENTRE, 1 - _CENTRE, 1 - _CENTRE),  # the middle: without corners and margins
)


class _Sliceable(Protocol):
    def __getitem__(self, key: slice, /) -> Any: ...


T = TypeVar("T", bound=_Sliceable)
Hits = tuple[list[np.ndarray], list[np.ndarray]]  # (scores, ids) per query row, best first
Search = Callable[[np.ndarray, int], Hits]  # (Q, d) unit vectors, k -> Hits


def crop_views(img: Image.Image, boxes: Sequence[Box] = QUERY_VIEWS) -> list[Image.Image]:
    """The crops of `img` that `boxes` name (each at least 1 x 1 px)."""
    w, h = img.size
    views = []
    for left, top, right, bottom in boxes:
        x0, y0 = min(w - 1, round(left * w)), min(h - 1, round(top * h))
        x1, y1 = max(x0 + 1, round(right * w)), max(y0 + 1, round(bottom * h))
        views.append(img if (x0, y0, x1, y1) == (0, 0, w, h) else img.crop((x0, y0, x1, y1)))
    return views


def view_squares(img: Image.Image, size: int, boxes: Sequence[Box] = QUERY_VIEWS) -> np.ndarray:
    """An RGB image -> (V, size, size, 3) uint8: its frame trimmed, then each view squared. The
    first (the whole image) is exactly `to_square(img, size)`, what the index holds for the same
    pixels."""
    trimmed = trim_frame(img)
    return np.stack([square_resize(view, size) for view in crop_views(trimmed, boxes)])


def decode_views(img: Image.Image, size: int, boxes: Sequence[Box] = QUERY_VIEWS) -> np.ndarray:
    """An image from `model.embedding.images.open_image` (header checked, not decoded yet) -> its views.

    A large image is downscaled while it is decoded (a JPEG by libjpeg's draft mode, any other
    format by a box reduction, `model.embedding.images.to_rgb`), as
    `model.embedding.images.decode_opened` does for the index, here only as far as the
    smallest view still has `size` pixels: its whole view may then come from a finer decode
    than the index's, so a re-uploaded indexed JPEG scores close to, not exactly, 1 against
    itself (0.984-1.000 for 20 of the benchmark photos with EfficientNet-Lite0 at 128 px,
    2026-11-27)."""
    smallest = min(min(right - left, bottom - top) for left, top, right, bottom in boxes)
    need = math.ceil(size / max(smallest, 1e-3))  # the side at which the smallest view keeps `size`
    if img.format == "JPEG":  # libjpeg may downscale while decoding
        img.draft("RGB", (need, need))
    return view_squares(to_rgb(img, need), size, boxes)


def merge_views(scores: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query's hits from each of its views -> its hits: each id once, at its best view's
    score, best first, at most k."""
    if not len(scores):
        return np.empty(0, np.float32), np.empty(0, np.int64)
    flat_scores, flat_ids = np.concatenate(scores), np.concatenate(ids)
    order = np.argsort(-flat_scores, kind="stable")
    _, first = np.unique(flat_ids[order], return_index=True)  # each id's first (best) place
    best = order[np.sort(first)][:k]
    return flat_scores[best].astype(np.float32, copy=False), flat_ids[best].astype(np.int64, copy=False)


def regroup(flat: T, parts: Sequence[Sized]) -> list[T]:
    """`flat` (rows of all `parts`, one after another) cut back into one slice per part: what a
    batched pass over several queries' views returns, per query."""
    ends = np.cumsum([len(part) for part in parts]).tolist()
    return [flat[start:end] for start, end in zip([0, *ends], ends, strict=False)]


def search_views(search: Search, queries: Sequence[np.ndarray], k: int) -> Hits:
    """Search each query's views ((V_i, d) unit vectors, V_i >= 1) in one call of `search`
    and merge each query's hits."""
    if not queries:
        return [], []
    scores, ids = search(np.concatenate(queries), k)
    merged = [merge_views(s, i, k) for s, i in zip(regroup(scores, queries), regroup(ids, queries), strict=True)]
    return [s for s, _ in merged], [i for _, i in merged]
