"""A 2-D map of a collection, computed with each index version and stored beside it.

Method: a neighbour-graph layout (index.layout: UMAP's method in numpy and FAISS, started from
the first two principal components). It keeps neighbourhoods, which is what the map is for
(clusters of similar images, and a collapsed space shows as one blob), without bringing SciPy,
scikit-learn or numba into the service image. Measured here (2 cores, 5,000 photo vectors): 7 s,
against 19 s for scikit-learn's t-SNE, which kept 0.36 of each image's 10 nearest neighbours on
the map against the layout's 0.30. A collection larger than `DEFAULT_MAP_SAMPLE` is mapped
through a fixed random sample of that many images; below `LAYOUT_MIN` images the map is the
first two principal components.

The map also records how spread out the indexed vectors are (model.common.spread) and the warning
when they look collapsed, so that the page can say so beside the picture.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index.layout import NEIGHBOURS, layout
from model.common.spread import collapse_warning, spread_stats

LOG = logging.getLogger(__name__)

MAP_FILE = "map.npz"
DEFAULT_MAP_SAMPLE = 5000
LAYOUT_MIN = 50


@dataclass(frozen=True)
class CollectionMap:
    ids: np.ndarray  # (n,) int64, the mapped images
    xy: np.ndarray  # (n, 2) float32 in [0, 1], one aspect ratio for both axes
    method: str
    collection_size: int  # images in the index when the map was made
    seconds: float
    spread: dict[str, float] = field(default_factory=dict)
    warning: str | None = None

    def meta(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "collection_size": self.collection_size,
            "seconds": round(self.seconds, 2),
            "spread": self.spread,
            "warning": self.warning,
        }


def compute_map(vectors: np.ndarray, ids: np.ndarray, sample: int = DEFAULT_MAP_SAMPLE, seed: int = 0) -> CollectionMap:
    """Map (a sample of at most `sample` of) the unit vectors `vectors` with ids `ids` to 2-D."""
    started = time.perf_counter()
    n = len(ids)
    picked = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if n > sample else np.arange(n)
    x = np.asarray(vectors[picked], dtype=np.float32)
    if len(x) >= LAYOUT_MIN:
        xy = layout(x, seed)
        method = f"neighbour-graph layout ({NEIGHBOURS} neighbours an image)"
    else:
        xy = _pca2(x)
        method = "first two principal components"
    if len(x) < n:
        method += f", a random sample of {len(x):,} of {n:,} images"
    stats = spread_stats(x) if len(x) > 1 else {}
    warning = collapse_warning(stats) if stats else None
    seconds = time.perf_counter() - started
    LOG.info("map of %d images (%s) in %.1f s", len(x), method, seconds)
    return CollectionMap(ids[picked].astype(np.int64), _unit_square(xy), method, n, seconds, stats, warning)


def _pca2(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0) if len(x) else x
    if len(x) < 2:
        return np.zeros((len(x), 2), np.float32)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    return np.asarray(np.pad(out, ((0, 0), (0, 2 - out.shape[1]))))


def _unit_square(xy: np.ndarray) -> np.ndarray:
    """Shift and scale (one factor for both axes) into [0, 1]; a single point sits in the middle."""
    xy = np.asarray(xy, dtype=np.float64)
    if not len(xy):
        return np.empty((0, 2), np.float32)
    low, span = xy.min(axis=0), float((xy.max(axis=0) - xy.min(axis=0)).max())
    if span <= 0:
        return np.full(xy.shape, 0.5, np.float32)
    out: np.ndarray = (xy - low) / span
    out += (1 - out.max(axis=0)) / 2  # centre the shorter axis
    return out.astype(np.float32)


def save_map(directory: Path, collection_map: CollectionMap) -> None:
    np.savez(
        directory / MAP_FILE,
        ids=collection_map.ids,
        xy=collection_map.xy,
        meta=np.array(json.dumps(collection_map.meta())),
    )


def load_map(directory: Path) -> CollectionMap | None:
    """The version's map, or None for a version made before maps were (or with the map off)."""
    path = directory / MAP_FILE
    if not path.exists():
        return None
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return CollectionMap(
            data["ids"].astype(np.int64),
            data["xy"].astype(np.float32),
            meta["method"],
            int(meta["collection_size"]),
            float(meta["seconds"]),
            meta.get("spread", {}),
            meta.get("warning"),
        )
