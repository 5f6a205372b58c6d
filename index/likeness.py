"""Pixel likeness: the second test a near-duplicate pair passes.

An embedding puts two photos of the same kind of flower as close as a photo and its re-saved,
halved or slightly cropped copy (measured on 300 flower photos with EfficientNet-Lite0: the
closest distinct pair at cosine 0.91, planted copies from 0.82 up; BENCHMARKS.md, "Planted
copies"), so no cosine alone finds the copies without joining distinct photos. A copy keeps its
original's layout of light and dark, which a distinct photo does not: the correlation of two
small grey thumbnails (the centre square, 24 x 24, each made zero-mean and unit-length) was
0.91 or more for every planted pair and at most 0.87 for distinct pairs on the same images.
So a pair whose cosine is below the sure threshold but above the candidate level joins a group
when its thumbnails correlate at least as well as copies do (index.calibrate measures both).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from model.embedding.images import UnreadableImageError, open_image, to_rgb

SIDE = 24


def thumbnail(img: Image.Image) -> np.ndarray:
    """(SIDE * SIDE,) float32: the centre square in grey, zero-mean and unit-length."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    grey = img.convert("L").crop((left, top, left + side, top + side)).resize((SIDE, SIDE), Image.Resampling.BOX)
    pixels = np.asarray(grey, np.float32).ravel()
    pixels -= pixels.mean()
    return pixels / max(float(np.linalg.norm(pixels)), 1e-6)


def thumbnail_of(data: bytes) -> np.ndarray | None:
    """The thumbnail of encoded image bytes (decoded small: JPEG draft mode); None if unreadable."""
    try:
        img = open_image(data)
        img.draft("RGB", (4 * SIDE, 4 * SIDE))
        return thumbnail(to_rgb(img, 4 * SIDE))
    except UnreadableImageError:
        return None


def likeness(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise correlation of two stacks of thumbnails ((n, SIDE * SIDE) each)."""
    out: np.ndarray = np.einsum("ij,ij->i", a, b)
    return out


class StoredThumbnails:
    """Thumbnails of an index's stored images, made on first use and kept (2.3 KB each)."""

    def __init__(self, fetch: Callable[[int], bytes | None]) -> None:
        self._fetch = fetch  # id -> the image's bytes (None when not stored)
        self._made: dict[int, np.ndarray | None] = {}

    def get(self, image_id: int) -> np.ndarray | None:
        if image_id not in self._made:
            data = self._fetch(image_id)
            self._made[image_id] = thumbnail_of(data) if data is not None else None
        return self._made[image_id]

    def alike(self, a: np.ndarray, b: np.ndarray, pixel: float) -> np.ndarray:
        """For pairs of ids (a[i], b[i]): whether their thumbnails correlate at least `pixel`
        (False where an image's bytes are not stored or not readable)."""
        out = np.zeros(len(a), bool)
        for n, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            ti, tj = self.get(int(i)), self.get(int(j))
            out[n] = ti is not None and tj is not None and float(ti @ tj) >= pixel
        return out
