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
into one group. Pairs below it are still joined when they look like copies (index.likeness):
cosine at or above `candidate` (the copies' 5th percentile) and thumbnails that correlate at
least as well as 95 % of the edited copies' do with their originals and better than 95 % of
images with their nearest neighbour below `candidate` (`pixel`: the same rule in pixels as the
threshold's in cosine, with the neighbours that could be copies left out). That second test
is dropped (`pixel` None, with a warning) when the neighbours' level
is above what half of the copies reach (a collection of look-alike scans).
A collection where more than 5 % of images really are near duplicates keeps the sure threshold
at a copy's level, since its 95th neighbour percentile is then itself a copy's cosine (the
pixel test still finds the rest). When the median neighbour is as close as a copy, the encoder
does not tell copies from merely similar images: a warning says so.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from index.duplicates import PixelCheck
from index.images import ImageStore
from index.likeness import StoredThumbnails, likeness, thumbnail, thumbnail_of
from index.store import ImageIndex
from model.embedding.edits import Edit, crop_area, jpeg
from model.embedding.images import open_image, to_rgb, to_square
from model.embedding.runtime import EncoderRuntime

SAMPLE = 200  # images edited into copies
NEIGHBOUR_SAMPLE = 2000  # images whose nearest neighbour is looked up
PERCENTILE = 5.0
NEIGHBOURS_SEEN = 20  # neighbours looked through for the nearest one that is not a copy
MIN_THRESHOLD, MAX_THRESHOLD = 0.5, 0.999


def scale(factor: float) -> Edit:
    def edit(img: Image.Image, rng: random.Random) -> Image.Image:
        w, h = img.size
        return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR)

    return edit


NEAR_DUPLICATE_EDITS: dict[str, Edit] = {
    "JPEG q75": jpeg(75),
    "JPEG q40": jpeg(40),
    "75 % size": scale(0.75),
    "half size": scale(0.5),
    "crop 90 %": crop_area(0.9),
}


@dataclass(frozen=True)
class Calibration:
    threshold: float
    copy_cosine: dict[str, float]  # median cosine of an edited copy to its original, per edit
    copy_p5: float  # 5th percentile over every edited copy
    neighbour_median: float  # median cosine of an image to its nearest other image
    neighbour_p95: float
    images: int  # images sampled
    warning: str | None
    candidate: float  # cosine from which a pair is checked by its pixels (copies' 5th percentile)
    pixel: float | None  # thumbnail correlation a checked pair needs (None: the check is off)
    copy_likeness_p5: float  # 5th percentile of the copies' thumbnail correlation with their originals
    neighbour_likeness_p95: float  # the same, 95th percentile, with its nearest neighbour below `candidate`


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
    own = np.stack([thumbnail(img) for img in images])
    likes = []
    for n, (name, edit) in enumerate(NEAR_DUPLICATE_EDITS.items()):
        edit_rng = random.Random(seed * 1000 + n)
        edited = [edit(img, edit_rng) for img in images]
        pixels = np.stack([to_square(e, encoder.image_size) for e in edited])
        cosines[name] = np.einsum("ij,ij->i", encoder.embed_pixels(pixels), stored)
        likes.append(likeness(own, np.stack([thumbnail(e) for e in edited])))
    all_copies = np.concatenate(list(cosines.values()))
    copy_p5 = float(np.percentile(all_copies, PERCENTILE))
    copy_likeness_p5 = float(np.percentile(np.concatenate(likes), PERCENTILE))
    nearest = nearest_other(index, ids, rng)
    neighbour_p95 = float(np.percentile(nearest, 100 - PERCENTILE)) if len(nearest) else -1.0
    neighbour_median = float(np.median(nearest)) if len(nearest) else -1.0
    raw = max(copy_p5, neighbour_p95)
    threshold = min(MAX_THRESHOLD, max(MIN_THRESHOLD, math.floor(raw / 0.005) * 0.005))
    candidate = min(threshold, max(MIN_THRESHOLD, math.floor(copy_p5 / 0.005) * 0.005))
    neighbour_likeness = _neighbour_likeness(index, store, np.array(originals, dtype=np.int64), own, candidate)
    neighbour_likeness_p95 = (
        float(np.percentile(neighbour_likeness, 100 - PERCENTILE)) if len(neighbour_likeness) else 1.0
    )
    copy_likeness_median = float(np.median(np.concatenate(likes)))
    needed = max(copy_likeness_p5, neighbour_likeness_p95)
    pixel = round(needed, 3) if needed <= copy_likeness_median else None
    warning = None
    if pixel is None:
        warning = (
            f"1 image in 20 looks as alike in pixels to its nearest neighbour ({neighbour_likeness_p95:.3f}) as half "
            f"of the edited copies to their originals ({copy_likeness_median:.3f}): only pairs at cosine >= "
            f"{threshold:.3f} are grouped, and copies below it are missed"
        )
    if neighbour_median >= copy_p5:
        warning = (
            f"half of the images have another image at cosine >= {neighbour_median:.3f}, as close as a resized or "
            f"re-encoded copy ({copy_p5:.3f}): this encoder does not tell copies from similar images, so the "
            f"threshold is raised to {threshold:.3f} and some copies will be missed"
        )
    return Calibration(
        threshold=round(threshold, 3),
        copy_cosine={name: round(float(np.median(c)), 4) for name, c in cosines.items()},
        copy_p5=round(copy_p5, 4),
        neighbour_median=round(neighbour_median, 4),
        neighbour_p95=round(neighbour_p95, 4),
        images=len(originals),
        warning=warning,
        candidate=round(candidate, 3),
        pixel=pixel,
        copy_likeness_p5=round(copy_likeness_p5, 4),
        neighbour_likeness_p95=round(neighbour_likeness_p95, 4),
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


def _neighbour_likeness(
    index: ImageIndex, store: ImageStore, ids: np.ndarray, own: np.ndarray, below: float
) -> np.ndarray:
    """Thumbnail correlation of each sampled image (thumbnails `own`) with its nearest other
    image below cosine `below`: a similar image that is not a copy (the copies of a collection
    with many near duplicates would otherwise set the level, as they do for neighbour_p95)."""
    scores, found = index.search(index.vectors(ids).astype(np.float32), NEIGHBOURS_SEEN)
    others = []
    for row_scores, row_ids, me in zip(scores, found, ids, strict=True):
        close = (int(j) for s, j in zip(row_scores, row_ids, strict=True) if int(j) != int(me) and s < below)
        others.append(next(close, -1))
    rows = index.rows([o for o in others if o >= 0])
    out = []
    for n, other in enumerate(others):
        data = store.get(rows[other].sha256) if other in rows else None
        thumb = thumbnail_of(data) if data is not None else None
        if thumb is not None:
            out.append(float(own[n] @ thumb))
    return np.array(out)


def stored_thumbnails(index: ImageIndex, store: ImageStore) -> StoredThumbnails:
    """Thumbnails of `index`'s images from `store`, made as pairs are checked."""

    def fetch(image_id: int) -> bytes | None:
        row = index.rows([image_id]).get(image_id)
        return store.get(row.sha256) if row is not None else None

    return StoredThumbnails(fetch)


def pixel_check(found: Calibration, thumbs: StoredThumbnails) -> PixelCheck | None:
    """The second test the measured default gives pairs between `candidate` and the threshold
    (None when the calibration found pixels no help)."""
    if found.pixel is None:
        return None
    pixel = found.pixel
    return PixelCheck(found.candidate, lambda a, b: thumbs.alike(a, b, pixel))
