"""Interleaved A/B of the service between two source trees (what one change to the serving
pipeline gave), on one encoder and index, with the bench.serve client.

    git worktree add /tmp/before 42ae45e
    uv run python -m bench.serve_ab --data DATA --encoder runs/bench-serve/cpu-small-untrained.pt \\
        --index runs/bench-serve/index-cpu-small --tree before=/tmp/before --tree after=. --rounds 3

Each round starts each tree's `latent-search serve` in turn (PYTHONPATH = the tree), warms it up
and loads it at concurrency 1 and 16; rounds alternate the trees so that the machine's drift
(large on a shared VM) falls on both. Prints every run and the medians; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.serve import free_port, load_test, multipart, sample_queries, stopped_after, wait_until_ready


def one_run(
    tree: Path, encoder: str, index: str, runtime: str, bodies: list[tuple[bytes, str]]
) -> dict[int, dict[str, float]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "LATENT_SEARCH_RUNTIME": runtime}
    cmd = [sys.executable, "-m", "app.cli", "serve", "--encoder", encoder, "--index", index, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with stopped_after(wait_until_ready(proc, port)):
        load_test(port, bodies, 4, 60, 10)  # warm-up
        return {c: load_test(port, bodies, c, 300, 15) for c in (1, 16)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--tree", action="append", required=True, help="LABEL=PATH[:RUNTIME] (runtime onnx/torch)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bodies = [multipart(q) for q in sample_queries(args.data, 64)]
    encoder, index = str(Path(args.encoder).resolve()), str(Path(args.index).resolve())
    results: dict[str, list[dict[int, dict[str, float]]]] = {}
    for _ in range(args.rounds):
        for spec in args.tree:
            label, _, where = spec.partition("=")
            path, _, runtime = where.partition(":")
            r = one_run(Path(path).resolve(), encoder, index, runtime or "onnx", bodies)
            results.setdefault(label, []).append(r)
            print(
                f"{label}: c=1 p50 {r[1]['p50']:.1f} ms, {r[1]['qps']:.0f} q/s; c=16 {r[16]['qps']:.0f} q/s", flush=True
            )
    for label, runs in results.items():
        p50 = statistics.median(r[1]["p50"] for r in runs)
        q1 = statistics.median(r[1]["qps"] for r in runs)
        q16 = statistics.median(r[16]["qps"] for r in runs)
        print(f"median {label}: c=1 p50 {p50:.1f} ms ({q1:.0f} q/s), c=16 {q16:.0f} q/s")


if __name__ == "__main__":
    main()
