"""Timings of the collection features on a real index: duplicates, the map, filtered search, browsing.

    uv run python -m bench.collection --index indexes/default [--million]

On the index given (e.g. the demo's 60,000 CIFAR-10 images): near-duplicate groups at three
thresholds (the first search and the cached repeat are timed by the service; here the search
itself), the map (the neighbour-graph layout of the default sample), a filtered search for a common label, a rare
label and no filter (median of 200 queries each, one thread, as the service searches), and a
page of browsing. With --million, the duplicate search's cost at 1,000,000 vectors is measured
on a synthetic clustered IVF index of that size: a share of its vectors queried, the rest
extrapolated (the cost per query is the same for every query). Writes the "collection" section
of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bench.report import machine, table, today, write_section
from index.atlas import compute_map
from index.catalog import CatalogFilter
from index.duplicates import find_duplicates
from index.faiss_index import build_faiss, set_search_param, set_threads
from index.plan import nlist_for
from index.store import ImageIndex, load


def median_ms(run: object, reps: int = 200) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def million_estimate(dim: int, nprobe: int, queries: int = 20_000) -> tuple[str, float, float]:
    """(factory, seconds for `queries` range searches, extrapolated seconds for all 1M)."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    x = centres[rng.integers(0, 2000, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    factory = f"IVF{nlist_for(n)}_HNSW32,Flat"
    t0 = time.perf_counter()
    index = build_faiss(x, np.arange(n, dtype=np.int64), factory)
    print(f"built {factory} on {n} synthetic vectors in {time.perf_counter() - t0:.0f} s")
    set_search_param(index, nprobe)
    t0 = time.perf_counter()
    for start in range(0, queries, 32):
        index.range_search(x[start : start + 32], 0.95)
    took = time.perf_counter() - t0
    return factory, took, took * n / queries


def pair_recall(index: ImageIndex, vectors: np.ndarray, ids: np.ndarray) -> list[list[str]]:
    """Pairs the duplicate search finds at nprobe 4 / 8 / tuned, against every list probed."""
    from index.duplicates import _edges

    tuned = int(next(iter(index.manifest.search_params.values())))
    nlist = index.backend.param_grid()[-1]
    rows = []
    for threshold in (0.99, 0.95):
        found = {}
        for nprobe in (4, 8, tuned, nlist):
            index.backend.set_param(nprobe)
            t0 = time.perf_counter()
            a, b, _ = _edges(index, vectors, ids, threshold)
            found[nprobe] = (set(zip(a.tolist(), b.tolist(), strict=True)), time.perf_counter() - t0)
        exact, exact_s = found[nlist]
        for nprobe in (4, 8, tuned):
            pairs, took = found[nprobe]
            rows.append([f"duplicate pairs found, cosine >= {threshold}, nprobe {nprobe}",
                         f"{took:.1f} s", f"{len(pairs & exact) / max(len(exact), 1):.3f} of the {len(exact):,} pairs "
                         f"that probing all {nlist} lists finds ({exact_s:.0f} s)"])  # fmt: skip
    index.backend.set_param(tuned)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--million", action="store_true", help="also measure the duplicate search at 1M vectors")
    parser.add_argument("--encoder", type=Path, help="the index's encoder: also time the measured threshold")
    parser.add_argument("--pair-recall", action="store_true", help="also the duplicate pairs an IVF search misses")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    index = load(args.index)
    n, kind = index.count, index.manifest.index_type
    rows: list[list[str]] = []
    for threshold in (0.99, 0.97, 0.95):
        report = find_duplicates(index, threshold)
        largest = report.groups[0].size if report.groups else 0
        rows.append([f"duplicates, cosine >= {threshold}", f"{report.seconds:.1f} s",
                     f"{len(report.groups):,} groups, largest {largest:,}"])  # fmt: skip
    if args.encoder is not None:
        from index.calibrate import calibrate
        from index.images import ImageStore
        from model.embedding.runtime import load_runtime

        t0 = time.perf_counter()
        found = calibrate(load_runtime(args.encoder, "auto", "cpu"), index, ImageStore(args.index / "images"))
        rows.append(["measured duplicate threshold", f"{time.perf_counter() - t0:.1f} s",
                     f"{found.threshold} (copies' 5th percentile {found.copy_p5}, nearest neighbours' 95th "
                     f"{found.neighbour_p95}, median {found.neighbour_median})"])  # fmt: skip
    ids = np.array(index.catalog.ids())
    vectors = index.vectors(ids)
    collection_map = compute_map(vectors, ids)
    rows.append(["map", f"{collection_map.seconds:.1f} s", collection_map.method])

    set_threads(1)
    labels = [label for label, _ in index.catalog.labels() if label is not None]
    rng = np.random.default_rng(0)
    queries = vectors[rng.choice(len(vectors), 200, replace=False)]
    q = iter(np.concatenate([queries] * 2))
    rows.append(["search k=10, no filter", f"{median_ms(lambda: index.search(next(q)[None], 10)):.2f} ms", kind])
    if labels:
        common = CatalogFilter((labels[0],))
        share = len(index.catalog.matching_ids(common)) / n
        q = iter(np.concatenate([queries] * 2))
        ms = median_ms(lambda: index.search(next(q)[None], 10, common))
        rows.append([f"search k=10, label {labels[0]!r}", f"{ms:.2f} ms", f"{share:.0%} of the index"])
    rare = CatalogFilter(uri_prefix=index.rows([int(ids[0])])[int(ids[0])].uri)
    q = iter(np.concatenate([queries] * 2))
    ms = median_ms(lambda: index.search(next(q)[None], 10, rare))
    rows.append(["search k=10, uri prefix matching 1 image", f"{ms:.2f} ms", "exhaustive over the selected ids"])
    ms = median_ms(lambda: index.catalog.page(CatalogFilter(), int(ids[n // 2]), 50), 50)
    rows.append(["browse, a page of 50 (GET /images)", f"{ms:.2f} ms", "keyset paging on id"])

    if args.pair_recall:
        set_threads(2)
        rows += pair_recall(index, vectors, ids)
    estimate = ""
    if args.million:
        nprobe = int(next(iter(index.manifest.search_params.values()), 32))
        set_threads(2)
        factory, took, total = million_estimate(index.dim, nprobe)
        rows.append(["duplicates at 1,000,000 (synthetic)", f"{total / 60:.0f} min (est.)",
                     f"{factory}, nprobe {nprobe}: 20,000 queries took {took:.0f} s, x50"])  # fmt: skip
        estimate = (
            f"\n\nAt 1,000,000 vectors the duplicate search is estimated from a measured share: a synthetic clustered "
            f"{factory} index of {index.dim}-d vectors, 20,000 of them range-searched at the tuned nprobe of this "
            f"index ({nprobe}), times 50."
        )
    index.close()
    flags = f" --encoder {args.encoder}" if args.encoder else ""
    flags += "".join(f" --{f.replace('_', '-')}" for f in ("pair_recall", "million") if getattr(args, f))
    body = (
        f"## Collection features: duplicates, map, filters, browsing ({today()})\n\n"
        f"`uv run python -m bench.collection --index {args.index}{flags}` on "
        f"{machine()}; index of {n:,} images ({kind}, {index.dim}-d).\n\n"
        + table(["what", "time", "notes"], rows)
        + estimate
    )
    print(body)
    if not args.no_write:
        write_section("collection", body)


if __name__ == "__main__":
    main()
