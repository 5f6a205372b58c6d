"""Resident memory of a serving process: after start, under search load, during a rebuild, idle.

    uv run python -m bench.memory --serve ENCODER.pt INDEX [--serve ENCODER2.pt INDEX2 ...] \
        [--synthetic ENCODER.pt --sizes 10000 100000 1000000 --backends faiss milvus]

For each index (with the encoder it was built with): `latent-search serve` in its own process (the encoder
unloaded after LATENT_SEARCH_ENCODER_IDLE_UNLOAD_S=10 for the measurement), then its resident
memory (VmRSS from /proc, Linux) when ready; after POST /search load at concurrency 1, 4 and 16
(640 x 480 JPEG uploads, 64 requests a level); its peak while a rebuild (POST /index/rebuild)
re-embeds the collection, sampled every 0.2 s (skipped with --no-rebuild); and after the encoder's
idle unload. With --synthetic, also indexes of SIZES clustered vectors of that encoder's
dimension (catalog rows, no stored images: no rebuild), in each backend given, built here with
the build's own planner and tuner (index.pipeline). Writes the "memory" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.report import machine, table, today, write_section
from bench.serve import free_port, multipart, stopped_after, wait_until_ready
from index.catalog import Catalog, NewImage
from index.pipeline import BuildOptions, stage_version
from index.vector_store import BackendChoice
from index.versions import CATALOG_FILE, publish, read_manifest, staging_dir
from model.embedding.runtime import load_runtime, manifest_entry

IDLE_UNLOAD_S = 10


def resident_mb(pid: int) -> float:
    """VmRSS of the process and of the processes it started (Milvus Lite runs its engine in a
    child process), in MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # ended meanwhile
                total += resident_mb(int(child))
    return total


def upload(seed: int) -> tuple[bytes, str]:
    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return multipart(buf.getvalue())


def call(
    port: int, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"
) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
    answer: dict[str, Any] = json.loads(conn.getresponse().read() or b"{}")
    conn.close()
    return answer


def measure(encoder: Path, index: Path, rebuild: bool) -> list[str]:
    port = free_port()
    env = {**os.environ, "LATENT_SEARCH_ENCODER_IDLE_UNLOAD_S": str(IDLE_UNLOAD_S)}
    cmd = [sys.executable, "-m", "app.cli", "serve", "--encoder", str(encoder), "--index", str(index)]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with stopped_after(wait_until_ready(proc, port)):
        ready = resident_mb(proc.pid)
        bodies = [upload(i) for i in range(16)]
        loaded = []
        for c in (1, 4, 16):
            with ThreadPoolExecutor(c) as pool:
                list(pool.map(lambda i: call(port, "POST", "/search?k=10", *bodies[i % 16]), range(64)))
            loaded.append(resident_mb(proc.pid))
        peak = float("nan")
        if rebuild:
            job = call(port, "POST", "/index/rebuild", b"{}")
            peak = resident_mb(proc.pid)
            while call(port, "GET", f"/index/rebuild/{job['id']}")["state"] in ("queued", "running"):
                peak = max(peak, resident_mb(proc.pid))
                time.sleep(0.2)
        deadline = time.monotonic() + IDLE_UNLOAD_S + 30
        while call(port, "GET", "/index").get("encoder_loaded") and time.monotonic() < deadline:
            time.sleep(0.5)
        idle = resident_mb(proc.pid)
    manifest = read_manifest(index)
    backend = (manifest.get("vector_store") or {}).get("backend", "faiss")
    encoder_name = (
        f"{manifest['encoder']['config'].get('arch', '?')} {manifest['encoder']['config'].get('image_size', '?')} px"
    )
    return [
        encoder_name,
        f"{manifest['count']:,}",
        f"{backend}, {manifest['index_type']}, d={manifest['dim']}",
        f"{ready:.0f}",
        " / ".join(f"{x:.0f}" for x in loaded),
        f"{peak:.0f}" if rebuild else "-",
        f"{idle:.0f}",
    ]


def synthetic_index(encoder_path: Path, n: int, backend: str, work: Path) -> Path:
    """An index of n clustered unit vectors with catalog rows, as `index build` would publish it."""
    root = work / f"synthetic-{n}-{backend}"
    if (root / "CURRENT").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    encoder = load_runtime(encoder_path, "auto", "cpu")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, encoder.feature_dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 1000, n)] + 0.5 * rng.normal(size=(n, encoder.feature_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    staged = staging_dir(root)
    with Catalog(staged / CATALOG_FILE) as catalog:
        rows = [NewImage(f"synthetic/{i:07d}.jpg", f"{i:064x}", 640, 480, None) for i in range(n)]
        ids = np.array([i for i, _ in catalog.add(rows)], dtype=np.int64)
    options = BuildOptions(map_sample=0, backend=BackendChoice(backend))
    built, _ = stage_version(staged, vectors, ids, manifest_entry(encoder), options, data="synthetic")
    publish(root, staged)
    built.publish()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", nargs=2, action="append", default=[], metavar=("ENCODER", "INDEX"))
    parser.add_argument("--synthetic", type=Path, help="encoder.pt for synthetic indexes of --sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", default=["faiss", "milvus"])
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-memory"))
    parser.add_argument("--no-rebuild", action="store_true")
    parser.add_argument("--make-synthetic", nargs=3, metavar=("ENCODER", "N", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    if args.make_synthetic:  # in a process of its own: Milvus Lite holds its file until the process ends
        encoder, n, backend = args.make_synthetic
        synthetic_index(Path(encoder), int(n), backend, args.workdir)
        return
    runs = [(Path(e), Path(i), not args.no_rebuild) for e, i in args.serve]
    if args.synthetic is not None:
        for backend in args.backends:
            for n in args.sizes:
                maker = ["--make-synthetic", str(args.synthetic), str(n), backend, "--workdir", str(args.workdir)]
                subprocess.run([sys.executable, "-m", "bench.memory", *maker], check=True)
                runs.append((args.synthetic, args.workdir / f"synthetic-{n}-{backend}", False))
    for encoder, index, rebuild in runs:
        rows.append(measure(encoder, index, rebuild))
        print(rows[-1], flush=True)
    body = (
        f"## Resident memory of the serving process ({today()})\n\n`uv run python -m bench.memory "
        + " ".join(f"--serve {e} {i}" for e, i in args.serve)
        + (
            f" --synthetic {args.synthetic} --sizes {' '.join(map(str, args.sizes))} "
            f"--backends {' '.join(args.backends)}"
            if args.synthetic
            else ""
        )
        + f"` on {machine()}. VmRSS of the "
        "`latent-search serve` process and its children "
        "(the Milvus Lite engine runs in one) in MB (default settings, but the encoder unloaded after "
        f"{IDLE_UNLOAD_S} s idle instead of 300 s): when ready; after 64 searches at concurrency 1 / 4 / 16 "
        "(640 x 480 JPEG uploads); the peak while a rebuild re-embeds the collection; idle after the encoder's "
        "unload.\n\n"
        + table(["encoder", "images", "vector store", "ready", "after load c=1 / 4 / 16", "rebuild peak", "idle"], rows)
    )
    print(body)
    if not args.no_write:
        write_section("memory", body)


if __name__ == "__main__":
    main()
