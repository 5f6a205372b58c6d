"""Look at a collection before training on it, and choose the recipe that fits it.

Reads the headers (not the pixels) of a sample of the collection's images: how many there are,
how large, whether they are grayscale. Small images (CIFAR-like thumbnails, icons, sprites)
train from scratch with the small CNN at 32 px, which is cheap and measured competitive there
(BENCHMARKS.md); photographs start from a pretrained network (model.embedding.pretrained) and adapt it to
the collection, keeping the adapted network only where it retrieves edited copies better
(model.training.adapt). `--preset` overrides the choice.
"""

from __future__ import annotations

import io
import itertools
import logging
import statistics
from dataclasses import dataclass

from PIL import Image

from model.collections.data import iter_records

LOG = logging.getLogger(__name__)

SAMPLE = 200
PHOTO_SIDE = 96  # median shorter side from which a collection counts as photographs
# The side a photo collection is embedded at: its median shorter side (to a multiple of 32),
# within these bounds. Upscaling past the pixels a collection has costs neighbour quality and
# time: EfficientNet-Lite0 as it ships, kNN at 128 vs 224 px (BENCHMARKS.md "Encoder choice"):
# flowers5 (128-px photos) 72.2 vs 70.5 %; brain_mri4 (224 px) 81.9 vs 82.6 %; pacs_sketch (227 px)
# 69.5 vs 69.5 %; a 100-class photo set (median ~220 px) 88.0 vs 91.4 %.
EMBED_SIDE = (128, 224)


@dataclass(frozen=True)
class CollectionFacts:
    median_short_side: int
    median_long_side: int
    grayscale_share: float
    sampled: int


def inspect_collection(data: str, sample: int = SAMPLE) -> CollectionFacts:
    """Facts about `data` from the headers of its first `sample` readable images (no full pass)."""
    shorts, longs, gray, seen = [], [], 0, 0
    for record in itertools.islice(iter_records(data), sample * 2):
        try:
            with Image.open(io.BytesIO(record.data)) as img:
                w, h = img.size
                mode = img.mode
        except Exception:  # unreadable files are the decoder's business; skip them here
            continue
        shorts.append(min(w, h))
        longs.append(max(w, h))
        gray += mode in ("L", "LA", "I", "I;16", "1")
        seen += 1
        if seen >= sample:
            break
    if not seen:
        raise ValueError(f"no readable images found in {data!r}")
    # No image count here: counting reads a whole archive, and the training job counts anyway.
    return CollectionFacts(
        median_short_side=int(statistics.median(shorts)),
        median_long_side=int(statistics.median(longs)),
        grayscale_share=gray / seen,
        sampled=seen,
    )


def embed_side(facts: CollectionFacts) -> int:
    """The input side for a photo collection: its own resolution, not upscaled past the network's."""
    lo, hi = EMBED_SIDE
    return max(lo, min(hi, 32 * round(facts.median_short_side / 32)))


def choose_preset(facts: CollectionFacts, cuda: bool) -> tuple[str, str]:
    """(preset name, why) for a collection."""
    if facts.median_short_side < PHOTO_SIDE:
        name = "resnet18" if cuda else "cpu-small"
        why = (
            f"small images (median {facts.median_short_side} px on the shorter side): "
            f"{name} trained from scratch on them"
        )
        return name, why
    why = (
        f"photographs (median {facts.median_short_side} x {facts.median_long_side} px): start from ImageNet "
        f"EfficientNet-Lite0 at {embed_side(facts)} px and adapt it to the collection, keeping whichever "
        "the label-free judge prefers"
    )
    return "pretrained-lite0", why
