"""Resident memory of a serving process: after start, under search load, during a rebuild, idle.

    uv run python -m bench.memory --serve ENCODER.pt INDEX [--serve ENCODER2.pt INDEX2 ...]

For each index (with the encoder it was built with): `latent-search serve` in its own process (the encoder
unloaded after LATENT_SEARCH_ENCODER_IDLE_UNLOAD_S=10 for the measurement), then its resident
memory (VmRSS from /proc, Linux) when ready; after POST /search load at concurrency 1, 4 and 16
(640 x 480 JPEG uploads, 64 requests a level); its peak while a rebuild (POST /index/rebuild)
re-embeds the collection, sampled every 0.2 s (skipped with --no-rebuild); and after the encoder's
idle unload. Writes the "memory" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
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
from index.versions import read_manifest

IDLE_UNLOAD_S = 10


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", nargs=2, action="append", required=True, metavar=("ENCODER", "INDEX"))
    parser.add_argument("--no-rebuild", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    for encoder, index in args.serve:
        rows.append(measure(Path(encoder), Path(index), not args.no_rebuild))
        print(rows[-1], flush=True)
    body = (
        f"## Resident memory of the serving process ({today()})\n\n`uv run python -m bench.memory "
        + " ".join(f"--serve {e} {i}" for e, i in args.serve)
        + f"` on {machine()}. VmRSS of the "
        "`latent-search serve` process in MB (default settings, but the encoder unloaded after "
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
