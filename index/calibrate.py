"""What cosine a near duplicate has under this encoder: the default duplicate threshold.

A fixed cosine means different things for different encoders (a small CNN trained on 32-px
images packs its whole collection above 0.9; a pretrained network spreads it far wider), so
the default threshold is measured, on two fixed samples of the index's own images:

- copies: images edited the way near duplicates differ (re-encoded as JPEG, resized, slightly
  cropped), embedded, and compared with the stored vector of their original; the 5th
  percentile of those cosines is where 95 % of such copies would join their original;
- neighbours: the cosine of an image to its nearest other image; its 95th percentile is where
  only 1 image in 20 has any neighbour at all.

The threshold is the higher of the two (rounded down to 0.005, kept in [MIN_THRESHOLD,
MAX_THRESHOLD]): as similar as a copy usually is, and rare enough not to chain the collection
into one group. A collection where more than 5 % of images really are near duplicates keeps
the copy level, since its 95th neighbour percentile is then itself a copy's cosine. When the
median neighbour is as close as a copy, the encoder does not tell copies from merely similar
images: a warning says so (some copies will be missed at the raised threshold).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from index.images import ImageStore
from index.store import ImageIndex
from model.embedding.edits import Edit, crop_area, jpeg
from model.embedding.images import open_image, to_rgb, to_square
from model.embedding.runtime import EncoderRuntime

SAMPLE = 200  # images edited into copies
NEIGHBOUR_SAMPLE = 2000  # images whose nearest neighbour is looked up
PERCENTILE = 5.0
MIN_THRESHOLD, MAX_THRESHOLD = 0.5, 0.999


def scale(factor: float) -> Edit:
    def edit(img: Image.Image, rng: random.Random) -> Image.Image:
        w, h = img.size
        return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR)

    return edit


NEAR_DUPLICATE_EDITS: dict[str, Edit] = {"JPEG q75": jpeg(75), "75 % size": scale(0.75), "crop 90 %": crop_area(0.9)}


@dataclass(frozen=True)
class Calibration:
    threshold: float
    copy_cosine: dict[str, float]  # median cosine of an edited copy to its original, per edit
    copy_p5: float  # 5th percentile over every edited copy
    neighbour_median: float  # median cosine of an image to its nearest other image
    neighbour_p95: float
    images: int  # images sampled
    warning: str | None


def calibrate(encoder: EncoderRuntime, index: ImageIndex, store: ImageStore, seed: int = 0) -> Calibration:
    """Measure the near-duplicate threshold on a sample of `index` (images from `store`)."""
    ids = np.array(index.catalog.ids(), dtype=np.int64)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(ids, min(SAMPLE, len(ids)), replace=False)) if len(ids) else ids
    rows = index.rows([int(i) for i in picked])
    # Edited at twice the encoder's side (at least 256 px), not at full size: 200 decoded
    # 12-megapixel photos would hold 7 GB; the encoder sees a small square either way.
    side = max(256, 2 * encoder.image_size)
    originals, images = [], []
    for i in picked:
        data = store.get(rows[int(i)].sha256) if int(i) in rows else None
        if data is not None:
            img = open_image(data)
            img.draft("RGB", (side, side))  # JPEG: decode at a reduced scale directly
            img = to_rgb(img)
            img.thumbnail((side, side))
            originals.append(int(i))
            images.append(img)
    if not originals:
        raise ValueError("no stored images to calibrate the duplicate threshold with")
    stored = index.vectors(np.array(originals, dtype=np.int64)).astype(np.float32)
    stored /= np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
    cosines: dict[str, np.ndarray] = {}
    for n, (name, edit) in enumerate(NEAR_DUPLICATE_EDITS.items()):
        edit_rng = random.Random(seed * 1000 + n)
        pixels = np.stack([to_square(edit(img, edit_rng), encoder.image_size) for img in images])
        cosines[name] = np.einsum("ij,ij->i", encoder.embed_pixels(pixels), stored)
    copy_p5 = float(np.percentile(np.concatenate(list(cosines.values())), PERCENTILE))
    nearest = nearest_other(index, ids, rng)
    neighbour_p95 = float(np.percentile(nearest, 100 - PERCENTILE)) if len(nearest) else -1.0
    neighbour_median = float(np.median(nearest)) if len(nearest) else -1.0
    raw = max(copy_p5, neighbour_p95)
    threshold = min(MAX_THRESHOLD, max(MIN_THRESHOLD, math.floor(raw / 0.005) * 0.005))
    warning = None
    if neighbour_median >= copy_p5:
        warning = (
            f"half of the images have another image at cosine >= {neighbour_median:.3f}, as close as a resized or "
            f"re-encoded copy ({copy_p5:.3f}): this encoder does not tell copies from similar images, so the "
            f"threshold is raised to {threshold:.3f} and some copies will be missed"
        )
    return Calibration(
        round(threshold, 3),
        {name: round(float(np.median(c)), 4) for name, c in cosines.items()},
        round(copy_p5, 4),
        round(neighbour_median, 4),
        round(neighbour_p95, 4),
        len(originals),
        warning,
    )


def nearest_other(index: ImageIndex, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cosine of each of a sample of images to its nearest other image in the index."""
    picked = np.sort(rng.choice(ids, min(NEIGHBOUR_SAMPLE, len(ids)), replace=False))
    scores, found = index.search(index.vectors(picked).astype(np.float32), 2)
    out = []
    for row_scores, row_ids, me in zip(scores, found, picked, strict=True):
        others = [float(x) for x, j in zip(row_scores, row_ids, strict=True) if int(j) != int(me)]
        if others:
            out.append(others[0])
    return np.array(out)
