"""Near-duplicate groups: connected components of the graph "cosine >= threshold".

Each image's neighbours within the threshold come from a range search of the index itself
(exact for a flat index; an IVF index probes its tuned nprobe lists, so the cost grows about as
n^1.5, not n^2, and no n x n matrix is ever formed). The edges join into groups by label
propagation with pointer jumping (`component_labels`, numpy only: the service image has no
SciPy). Byte-identical copies were merged at ingest (one catalog row, their other uris in the
catalog's `copies`): they are reported with the image they are copies of, and an image that
only has byte copies is a group of its own.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.catalog import CatalogRow
from index.faiss_index import FaissStore
from index.store import ImageIndex

LOG = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.95
# Range-search results held at once: a batch of queries is sized so that even if every image
# matched every other its result buffers stay near this many pairs (about 12 bytes each).
RESULTS_PER_BATCH = 8_000_000
MAX_PAIRS = 20_000_000  # pairs within the threshold before the search gives up (~400 MB)


class TooManyPairsError(ValueError):
    """The threshold joins so many pairs that the groups would be meaningless (and the memory large)."""


@dataclass(frozen=True)
class Member:
    id: int
    score: float  # highest cosine to another member of its group (1.0 for byte copies only)
    copies: tuple[str, ...]  # other uris of byte-identical files merged into this image


@dataclass(frozen=True)
class Group:
    members: tuple[Member, ...]  # best connected first
    exact_only: bool  # one image and its byte-identical copies, no near duplicate

    @property
    def size(self) -> int:
        """Files in the group: its images and their byte copies."""
        return sum(1 + len(m.copies) for m in self.members)


@dataclass(frozen=True)
class DuplicateReport:
    threshold: float
    groups: list[Group]  # largest first
    images: int  # images searched
    seconds: float


@dataclass(frozen=True)
class PixelCheck:
    """Pairs at cosine >= `candidate` but below the threshold join a group when `alike(a, b)`
    (arrays of image ids -> bool array) says they look like copies (index.likeness)."""

    candidate: float
    alike: Callable[[np.ndarray, np.ndarray], np.ndarray]


def find_duplicates(
    index: ImageIndex, threshold: float = DEFAULT_THRESHOLD, check: PixelCheck | None = None
) -> DuplicateReport:
    """Every group of near-duplicate (cosine >= threshold, or >= check.candidate and alike in
    pixels) or byte-identical images in `index`."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
    started = time.perf_counter()
    with index.lock.read():  # a consistent snapshot of the catalog and the vectors (milliseconds)
        rows = list(index.catalog.rows())
        ids = np.array([r.id for r in rows], dtype=np.int64)
        vectors = index.vectors_locked(ids)
        copies = index.catalog.copies_of(r.sha256 for r in rows)
    lowest = min(threshold, check.candidate) if check is not None else threshold
    edges = _edges(index, vectors, ids, lowest)
    if check is not None and lowest < threshold:
        a, b, scores = edges
        doubtful = np.flatnonzero(scores < threshold)
        keep = np.ones(len(scores), bool)
        keep[doubtful] = check.alike(ids[a[doubtful]], ids[b[doubtful]])
        edges = (a[keep], b[keep], scores[keep])
    by_sha = {r.id: copies.get(r.sha256, []) for r in rows}
    groups = _components(ids, edges, by_sha)
    seconds = time.perf_counter() - started
    LOG.info("%d duplicate group(s) among %d images at cosine >= %.3f in %.1f s", len(groups), len(ids), threshold,
             seconds)  # fmt: skip
    return DuplicateReport(threshold, groups, len(ids), seconds)


def _edges(
    index: ImageIndex, vectors: np.ndarray, ids: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, cosine) for every pair a < b within the threshold (positions into `ids`, ascending).

    The live index is searched a batch at a time, each batch under the read lock only, so that
    writes wait milliseconds rather than the whole search; images added meanwhile are not in
    the snapshot `ids` and are left out, images removed meanwhile stop being found (as queries
    they may still link to others: callers drop them when they join the catalog rows).
    """
    if not len(ids):
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    a_all, b_all, s_all = [], [], []
    with index.lock.read():
        live = index.backend.range_searchable()
    searcher = live if live is not None else _range_searchable_copy(vectors, ids, index)
    lock = index.lock.read if live is not None else contextlib.nullcontext
    batch = int(np.clip(RESULTS_PER_BATCH // len(ids), 32, 2048))
    pairs = 0
    for start in range(0, len(ids), batch):
        queries = np.ascontiguousarray(vectors[start : start + batch], dtype=np.float32)
        with lock():
            lims, scores, found = searcher.range_search(queries, float(threshold))
        bounds: np.ndarray = np.asarray(lims, dtype=np.int64)
        counts = bounds[1:] - bounds[:-1]
        owner = np.repeat(np.arange(start, start + len(queries)), counts)
        other = np.minimum(np.searchsorted(ids, found), len(ids) - 1)
        keep = ids[other] == found  # in the snapshot (not -1 padding, not added since)
        owner, other, scores = owner[keep], other[keep], scores[keep]
        pair = owner < other  # each pair once, and never an image with itself
        a_all.append(owner[pair])
        b_all.append(other[pair])
        s_all.append(scores[pair])
        pairs += int(pair.sum())
        if pairs > MAX_PAIRS:
            raise TooManyPairsError(
                f"more than {MAX_PAIRS:,} pairs of images are within cosine {threshold} of each other (after "
                f"{start + len(queries):,} of {len(ids):,} images): raise the threshold"
            )
    return np.concatenate(a_all), np.concatenate(b_all), np.concatenate(s_all)


def _range_searchable_copy(vectors: np.ndarray, ids: np.ndarray, index: ImageIndex) -> faiss.Index:
    """For a store without range search (Milvus; a FAISS HNSW): an IVF copy like the index's own
    plan at its tuned nprobe where the plan is IVF (exact search over 60,000 vectors took 116 s
    against about 15 s this way), otherwise an exact one."""
    plan = index.manifest.index_type
    if plan.startswith("IVF") and ",Flat" in plan:
        copy = FaissStore.build(np.ascontiguousarray(vectors, dtype=np.float32), ids, plan)
        for value in index.manifest.search_params.values():
            copy.set_param(int(value))
        return copy.index
    return _flat(vectors, ids)


def _flat(vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    exact.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    return exact


def _components(
    ids: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray], copies: dict[int, list[str]]
) -> list[Group]:
    a, b, scores = edges
    n = len(ids)
    best = np.zeros(n, np.float32)
    np.maximum.at(best, a, scores)
    np.maximum.at(best, b, scores)
    labels = component_labels(n, a, b)
    sizes = np.bincount(labels, minlength=int(labels.max(initial=-1)) + 1)
    groups: list[Group] = []
    by_component = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for component in np.flatnonzero(sizes > 1):
        members = by_component[bounds[component] : bounds[component + 1]]
        order = members[np.lexsort((ids[members], -best[members]))]
        found = tuple(Member(int(ids[p]), float(best[p]), tuple(copies[int(ids[p])])) for p in order)
        groups.append(Group(found, False))
    for p in np.flatnonzero(sizes[labels] == 1):
        if copies[int(ids[p])]:
            groups.append(Group((Member(int(ids[p]), 1.0, tuple(copies[int(ids[p])])),), True))
    groups.sort(key=lambda g: (-g.size, -g.members[0].score, g.members[0].id))
    return groups


def component_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected components of the undirected graph on 0..n-1 with edges (a[i], b[i]):
    labels 0..count-1, numbered in the order of each component's smallest node.

    Each node points at the smallest node it has heard of; every round, both ends of each edge
    take the smaller of their two pointers, then pointers jump to their pointer's pointer until
    they settle. Rounds stop when no edge joins two different labels.
    """
    parent = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while True:
        pa, pb = parent[a], parent[b]
        apart = pa != pb
        if not apart.any():
            break
        low, high = np.minimum(pa[apart], pb[apart]), np.maximum(pa[apart], pb[apart])
        np.minimum.at(parent, high, low)  # hook the larger root under the smaller
        while True:  # pointer jumping: everyone points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    _, labels = np.unique(parent, return_inverse=True)
    return np.asarray(labels, dtype=np.int64).reshape(n)


def write_groups(report: DuplicateReport, rows: dict[int, CatalogRow], out: Path) -> None:
    """Every group to `out`: JSON (the groups with their images) or CSV (one line an image)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, Any]] = [
        {
            "size": g.size,
            "exact_only": g.exact_only,
            "images": [
                {"id": m.id, "uri": rows[m.id].uri, "label": rows[m.id].label, "score": round(m.score, 6),
                 "copies": list(m.copies)}
                for m in g.members
                if m.id in rows
            ],
        }
        for g in report.groups
    ]  # fmt: skip
    if out.suffix != ".csv":
        body = {"threshold": report.threshold, "images_searched": report.images, "groups": groups}
        out.write_text(json.dumps(body, indent=1) + "\n")
        return
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "size", "exact_only", "id", "uri", "label", "score", "copies"])
        for n, group in enumerate(groups):
            for image in group["images"]:
                writer.writerow([n, group["size"], group["exact_only"], image["id"], image["uri"], image["label"],
                                 image["score"], ";".join(image["copies"])])  # fmt: skip
