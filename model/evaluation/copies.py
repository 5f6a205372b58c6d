"""Copy retrieval: does an edited copy of an image find its original first? Needs no labels.

This is how latent-search judges an encoder on a collection it knows nothing about: take a
sample of the collection's own images, make the edits people make (model.embedding.edits), and count how
often the nearest neighbour of the edited copy, among all the sample's originals, is its own
original. The originals go through `to_square`, the transform of indexing; the edited copies
are searched as the service searches a query, by their views (model.embedding.query_views: an original
scores its best view's cosine).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from model.embedding.edits import EDITS, apply
from model.embedding.images import to_square
from model.embedding.query_views import QUERY_VIEWS, Box, view_squares

EmbedFn = Callable[[torch.Tensor], np.ndarray]  # uint8 (N, 3, S, S) -> (N, d) unit vectors


def to_pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([to_square(img.convert("RGB"), size) for img in images])).permute(0, 3, 1, 2)


def copy_retrieval(
    embed: EmbedFn,
    originals: Sequence[Image.Image],
    size: int,
    *,
    queries: int = 200,
    seed: int = 0,
    edits: Sequence[str] = tuple(EDITS),
    boxes: Sequence[Box] = QUERY_VIEWS,
) -> dict[str, float]:
    """Top-1 per edit (and "overall", their mean) of edited copies against the originals."""
    if len(originals) < 2:
        raise ValueError("copy retrieval needs at least 2 images")
    gallery = embed(to_pixels(originals, size))
    picked = random.Random(seed).sample(range(len(originals)), min(queries, len(originals)))
    scores: dict[str, float] = {}
    for e, name in enumerate(edits):
        edited = [apply(name, originals[i], seed * 1_000_003 + 7919 * e + i) for i in picked]
        views = np.concatenate([view_squares(img.convert("RGB"), size, boxes) for img in edited])
        sims = (embed(torch.from_numpy(views).permute(0, 3, 1, 2)) @ gallery.T).reshape(len(edited), len(boxes), -1)
        found = sims.max(axis=1).argmax(axis=1)
        scores[name] = float(np.mean(found == np.asarray(picked)))
    scores["overall"] = float(np.mean([scores[name] for name in edits]))
    return scores
