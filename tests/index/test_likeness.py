"""Pixel likeness of thumbnails: copies alike, distinct images not, against numpy's correlation."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from index.likeness import likeness, thumbnail, thumbnail_of


def scene(seed: int, w: int = 320, h: int = 240) -> Image.Image:
    """A photo-like picture: a few soft blobs of light on a gradient, different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = rng.uniform(40, 120) + 80 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1))
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.75), rng.uniform(0.05, 0.2)
        base = base + rng.uniform(-90, 90) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)
    grey = np.clip(base + rng.normal(0, 4, base.shape), 0, 255)
    return Image.fromarray(np.stack([grey, grey * 0.9, grey * 0.8], axis=2).astype(np.uint8))


def saved(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_likeness_is_the_pearson_correlation_of_the_thumbnails() -> None:
    a = np.stack([thumbnail(scene(s)) for s in range(5)])
    b = np.stack([thumbnail(scene(s + 10)) for s in range(5)])
    expected = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(likeness(a, b), expected, atol=1e-5)


def test_copies_are_alike_and_distinct_scenes_are_not() -> None:
    for seed in range(6):
        img = scene(seed)
        original = thumbnail_of(saved(img))
        w, h = img.size
        copies = [
            saved(img, quality=40),
            saved(img.resize((w // 2, h // 2), Image.Resampling.BILINEAR)),
            saved(img.crop((round(0.04 * w), round(0.04 * h), round(0.96 * w), round(0.96 * h)))),
        ]
        for copy in copies:
            assert float(original @ thumbnail_of(copy)) > 0.9  # type: ignore[operator]
        other = thumbnail_of(saved(scene(seed + 100)))
        assert float(original @ other) < 0.8  # type: ignore[operator]


def test_unreadable_bytes_have_no_thumbnail() -> None:
    assert thumbnail_of(b"not an image") is None
