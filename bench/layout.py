"""The collection map's layout against t-SNE and PCA on a real index.

    uv run python -m bench.layout --index indexes/photos [--sample 5000]

On (a fixed random sample of) the index's vectors: index.layout's neighbour-graph layout (what a
rebuild draws), scikit-learn's t-SNE (what the map used before it left the service image; offline
dependency only) and the first two principal components. For each: seconds, and how well the 2-D
picture keeps the space:
  - kept@10: the share of each image's 10 nearest neighbours (cosine, in the embedding) that are
    among its 10 nearest on the map;
  - label 1-NN on the map (labelled indexes only): the share of images whose nearest map point
    has their label; a map that mixes classes that the embedding keeps apart scores low.
Writes the "layout" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from bench.report import machine, table, today, write_section
from index.layout import layout
from index.store import load


def nearest(x: np.ndarray, k: int, inner: bool) -> np.ndarray:
    """Each row's k nearest other rows (exact; inner product or L2)."""
    data = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatIP(data.shape[1]) if inner else faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    _, found = index.search(data, k + 1)
    return found[:, 1:]


def kept(space: np.ndarray, picture: np.ndarray, k: int = 10) -> float:
    a, b = nearest(space, k, inner=True), nearest(picture, k, inner=False)
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(a, b, strict=True)]))


def label_1nn(picture: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(labels[nearest(picture, 1, inner=False)[:, 0]] == labels))


def pca2(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out: np.ndarray = centred @ vt[:2].T
    return out


def tsne(x: np.ndarray) -> np.ndarray:
    from sklearn.manifold import TSNE

    out: np.ndarray = TSNE(2, perplexity=30, init="pca", random_state=0).fit_transform(x)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    index = load(args.index)
    ids = np.array(index.catalog.ids())
    if len(ids) > args.sample:
        ids = np.sort(np.random.default_rng(0).choice(ids, args.sample, replace=False))
    x = np.asarray(index.vectors(ids), dtype=np.float32)
    rows_by_id = index.catalog.get(ids.tolist())
    names = [rows_by_id[int(i)].label for i in ids]
    labels = np.array([str(n) for n in names]) if all(n is not None for n in names) else None
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "neighbour-graph layout (index.layout, the service's map)": layout,
        "t-SNE (scikit-learn, perplexity 30, PCA start)": tsne,
        "first two principal components": pca2,
    }
    rows = []
    for name, method in methods.items():
        t0 = time.perf_counter()
        xy = method(x)
        seconds = time.perf_counter() - t0
        score = f"{label_1nn(xy, labels):.3f}" if labels is not None else "-"
        rows.append([name, f"{seconds:.1f}", f"{kept(x, xy):.3f}", score])
        print(rows[-1], flush=True)
    body = (
        f"## The map's layout ({today()})\n\n`uv run python -m bench.layout --index {args.index} --sample "
        f"{args.sample}` on {machine()}: {len(x):,} vectors of {x.shape[1]} dimensions"
        + (f", {len(set(labels))} labels" if labels is not None else ", unlabelled")
        + ". kept@10: share of each image's 10 nearest neighbours in the embedding that stay among its 10 "
        "nearest on the map; label 1-NN: share of images whose nearest map point has their label.\n\n"
        + table(["method", "seconds", "kept@10", "label 1-NN on the map"], rows)
    )
    print(body)
    if not args.no_write:
        write_section("layout", body)


if __name__ == "__main__":
    main()
