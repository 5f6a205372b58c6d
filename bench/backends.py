"""Vector backends side by side: FAISS in the process against Milvus (Lite by default, or a
server by --milvus-uri), through the same VectorStore code the build and the service use.

    uv run python -m bench.backends --sizes 100000 1000000

Per size: the index the build's planner picks (index.plan; IVF above 50,000 vectors) is built
in each backend, its search parameter tuned by the build's own tuner for recall@10 >= 0.95,
then measured on fresh queries (the mixture of bench.index, d = 512, never in the index):
build time (insert + index + tune), recall@10 against exact search, single and batched
queries/s, the process's resident memory growth and, for Milvus Lite, its folder on disk.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.index import DIM, mixture
from bench.report import machine, table, today, write_section
from index.plan import DEFAULT_MEMORY_BUDGET, plan_index
from index.tuning import recall_at_k, tune_index
from index.vector_store import BackendChoice, VectorStore
from index.vectors import build_store
from index.versions import staging_dir

LOG = logging.getLogger("bench.backends")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


def qps(store: VectorStore, queries: np.ndarray, batched: bool, budget_s: float) -> float:
    if batched:
        t0 = time.perf_counter()
        for start in range(0, len(queries), 100):
            store.search(queries[start : start + 100], 10)
        return len(queries) / (time.perf_counter() - t0)
    done, t0 = 0, time.perf_counter()
    while done < len(queries) and time.perf_counter() - t0 < budget_s:
        store.search(queries[done : done + 1], 10)
        done += 1
    return done / (time.perf_counter() - t0)


def run_one(
    backend: str, uri: str | None, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path, budget_s: float
) -> dict[str, Any]:
    ids = np.arange(len(base), dtype=np.int64)
    plan = plan_index(len(base), DIM, DEFAULT_MEMORY_BUDGET)
    root = work / backend
    before = rss_mib()
    t0 = time.perf_counter()
    store = build_store(BackendChoice(backend, uri), staging_dir(root), base, ids, plan)
    insert_s = time.perf_counter() - t0
    tuned = tune_index(store, base, ids, target=0.95)
    build_s = time.perf_counter() - t0
    for value in tuned["search_params"].values():
        store.set_param(int(value))
    _, found = store.search(queries, 10)
    row = {
        "backend": backend if backend == "faiss" else ("Milvus Lite" if uri is None else "Milvus server"),
        "n": len(base),
        "factory": plan.factory,
        "insert_s": insert_s,
        "build_s": build_s,
        "params": tuned["search_params"],
        "recall": recall_at_k(found, truth, 10),
        "qps_single": qps(store, queries, batched=False, budget_s=budget_s),
        "qps_batch": qps(store, queries, batched=True, budget_s=budget_s),
        "rss_mib": rss_mib() - before,
        "disk_mib": folder_mib(root / "milvus.db") if backend == "milvus" and uri is None else None,
    }
    store.drop()
    LOG.info("%s", row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--milvus-uri", default=None, help="a Milvus server instead of Milvus Lite")
    parser.add_argument("--backends", nargs="+", default=["faiss", "milvus"], choices=["faiss", "milvus"])
    parser.add_argument("--section", default="backends", help="the BENCHMARKS.md section to write")
    parser.add_argument("--single-seconds", type=float, default=10.0, help="time spent on single queries")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    faiss.omp_set_num_threads(2)
    rows = []
    for n in args.sizes:
        base, queries = mixture(n, seed=1), mixture(args.queries, seed=2)
        exact = faiss.IndexFlatIP(DIM)
        exact.add(base)
        _, truth = exact.search(queries, 10)
        del exact
        work = Path(tempfile.mkdtemp(prefix="bench-backends-"))
        try:
            for backend in args.backends:
                rows.append(run_one(backend, args.milvus_uri, base, queries, truth, work, args.single_seconds))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    body = (
        f"## Vector backends: {' and '.join(sorted({r['backend'] for r in rows}))} ({today()})\n\n"
        f"`uv run python -m bench.backends --sizes {' '.join(map(str, args.sizes))} "
        f"--backends {' '.join(args.backends)}"
        + (f" --milvus-uri {args.milvus_uri}" if args.milvus_uri else "")
        + f"` on {machine()}; pymilvus / milvus-lite as locked in uv.lock. "
        "d = 512 clustered synthetic unit vectors (bench.index's mixture); the index the build's planner "
        "picks, tuned by the build's tuner for recall@10 >= 0.95 through each backend; "
        f"{args.queries} fresh queries; single queries for up to {args.single_seconds:.0f} s, batches of 100. "
        "Memory: the process's resident-set growth over the build (Milvus Lite runs inside the process); "
        "disk: the Lite folder.\n\n"
        + table(
            [
                "vectors",
                "backend",
                "index",
                "insert s",
                "build + tune s",
                "search param",
                "recall@10",
                "q/s single",
                "q/s batched",
                "RSS growth MiB",
                "disk MiB",
            ],
            [
                [
                    f"{r['n']:,}",
                    r["backend"],
                    f"`{r['factory']}`",
                    f"{r['insert_s']:.1f}",
                    f"{r['build_s']:.1f}",
                    ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-",
                    f"{r['recall']:.3f}",
                    f"{r['qps_single']:.1f}",
                    f"{r['qps_batch']:.0f}",
                    f"{r['rss_mib']:.0f}",
                    "-" if r["disk_mib"] is None else f"{r['disk_mib']:.0f}",
                ]
                for r in rows
            ],
        )
    )
    print(body)
    if not args.no_write:
        write_section(args.section, body)


if __name__ == "__main__":
    main()
