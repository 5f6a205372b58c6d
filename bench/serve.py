"""Serving benchmark: the service under load against the limits of its two halves.

    uv run python -m bench.serve --data ../shared/data/cifar10-jpg.tar.gz \\
        --encoder cpu-small=untrained --encoder resnet18=untrained --runtime onnx --runtime torch

Once: a bare FastAPI endpoint (bench.bare_http: reads the same multipart upload, answers ten
fixed neighbours) under the same client at concurrency 16: the HTTP limit.
For each encoder and runtime: build (or reuse) an index over the collection, measure in-process
  - bare: decode + embed + search of one image, no HTTP (median of N),
  - the encoder's batched throughput as served (images/s at batch 32, the service's threads),
  - the combined limit 1 / (1 / encoder + 1 / HTTP),
then start `latent-search serve` (uvicorn, 127.0.0.1 only) and send bounded POST /search load
at concurrency 1, 4 and 16 from keep-alive client threads: queries/s and p50/p95/p99.
"untrained" makes a randomly initialised encoder of that preset (and its ONNX export): speed
does not depend on the weights.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import DEVNULL

import numpy as np
import torch

from bench.report import machine, table, today, write_section
from index.build import build_index
from index.store import load
from index.versions import IndexNotFoundError, read_manifest
from model.collections.data import iter_records
from model.common.hardware import usable_cores
from model.embedding.backbones import build_backbone
from model.embedding.encoder_file import save_encoder
from model.embedding.images import decode_square
from model.embedding.onnx_export import export_onnx
from model.embedding.runtime import load_runtime
from model.training.presets import preset


def untrained_encoder(name: str, path: Path) -> Path:
    if not path.exists():
        cfg = preset(name).encoder
        torch.manual_seed(0)
        backbone, dim = build_backbone(cfg)
        save_encoder(path, backbone.eval(), cfg, dim, trained={"note": "untrained, for speed benchmarks"})
        export_onnx(path)
    return path


def sample_queries(data: str, n: int) -> list[bytes]:
    out = []
    for record in iter_records(data):
        if record.split == "test" or record.split is None:
            out.append(record.data)
        if len(out) == n:
            break
    return out


def bare_pipeline(
    encoder_path: Path, runtime: str, index_dir: Path, queries: list[bytes], reps: int
) -> tuple[float, float]:
    """(median ms for one image end to end, batched images/s), threads as the service sets them."""
    encoder = load_runtime(encoder_path, runtime, "cpu", threads=usable_cores())
    index = load(index_dir, encoder.checksum)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        pixels = decode_square(queries[i % len(queries)], encoder.image_size)
        vec = encoder.embed_pixels(pixels[None])
        index.search(vec, 10)
        times.append(time.perf_counter() - t0)
    batch = np.stack([decode_square(q, encoder.image_size) for q in queries[:32]])
    encoder.embed_pixels(batch)
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < 5.0:
        encoder.embed_pixels(batch)
        done += len(batch)
    index.close()
    return 1000 * statistics.median(times[reps // 5 :]), done / (time.perf_counter() - t0)


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def load_test(
    port: int, bodies: list[tuple[bytes, str]], concurrency: int, max_requests: int, max_s: float
) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = [0]
    stop_at = time.perf_counter() + max_s

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                if counter[0] >= max_requests or time.perf_counter() > stop_at:
                    break
                i = counter[0]
                counter[0] += 1
            body, ctype = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/search?k=10", body=body, headers={"Content-Type": ctype})
            resp = conn.getresponse()
            resp.read()
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                if resp.status != 200:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = sorted(1000 * x for x in latencies)

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, int(q * len(ms)))]

    return {
        "n": len(ms),
        "errors": errors[0],
        "qps": len(ms) / wall,
        "p50": pick(0.5),
        "p95": pick(0.95),
        "p99": pick(0.99),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(encoder: Path, index_dir: Path, port: int, runtime: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LATENT_SEARCH_RUNTIME": runtime}
    cmd = [sys.executable, "-m", "app.cli", "serve", "--encoder", str(encoder), "--index", str(index_dir)]
    return wait_until_ready(
        subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=DEVNULL, stderr=DEVNULL), port
    )


def bare_http(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "bench.bare_http:app", "--port", str(port), "--log-level", "warning"]
    return wait_until_ready(subprocess.Popen(cmd, stdout=DEVNULL, stderr=DEVNULL), port)


def wait_until_ready(proc: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not become ready in 120 s")


@contextmanager
def stopped_after(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The server process, terminated (and waited for) when the block ends, however it ends."""
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def http_limit(bodies: list[tuple[bytes, str]], requests: int, seconds: float) -> float:
    """q/s of the bare FastAPI endpoint at concurrency 16, with the benchmark's client."""
    port = free_port()
    with stopped_after(bare_http(port)):
        load_test(port, bodies, 4, 200, 5)  # warm-up
        return load_test(port, bodies, 16, 4 * requests, seconds)["qps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--encoder", action="append", required=True, help="NAME=PATH or NAME=untrained")
    parser.add_argument("--runtime", action="append", choices=["onnx", "torch"], help="default: onnx")
    parser.add_argument("--workdir", default="runs/bench-serve")
    parser.add_argument("--requests", type=int, default=400, help="most requests per concurrency level")
    parser.add_argument("--seconds", type=float, default=30.0, help="most seconds per concurrency level")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runtimes = args.runtime or ["onnx"]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    queries = sample_queries(args.data, 64)
    bodies = [multipart(q) for q in queries]
    http_qps = http_limit(bodies, args.requests, args.seconds)
    print(f"bare FastAPI upload endpoint: {http_qps:.0f} q/s at concurrency 16", flush=True)
    rows = []
    for spec in args.encoder:
        name, _, where = spec.partition("=")
        enc_path = untrained_encoder(name, work / f"{name}-untrained.pt") if where == "untrained" else Path(where)
        index_dir = work / f"index-{name}"
        checksum = load_runtime(enc_path, device="cpu").checksum
        try:
            fresh = read_manifest(index_dir)["encoder"]["sha256"] == checksum
        except IndexNotFoundError:
            fresh = False
        if not fresh:
            build_index(load_runtime(enc_path), args.data, index_dir, progress=False)
        count = read_manifest(index_dir)["count"]
        for runtime in runtimes:
            bare_ms, batched = bare_pipeline(enc_path, runtime, index_dir, queries, reps=100)
            limit = 1 / (1 / batched + 1 / http_qps)
            print(f"{name} {runtime}: bare {bare_ms:.2f} ms, {batched:.0f} img/s, limit {limit:.0f} q/s", flush=True)
            port = free_port()
            with stopped_after(serve(enc_path, index_dir, port, runtime)):
                load_test(port, bodies, 4, 40, 10)  # warm-up
                for c in (1, 4, 16):
                    r = load_test(port, bodies, c, args.requests, args.seconds)
                    print(f"  c={c}: {r}", flush=True)
                    rows.append(
                        [
                            name + (" (untrained)" if where == "untrained" else ""),
                            runtime,
                            f"{count:,}",
                            f"{bare_ms:.1f}",
                            f"{batched:.0f}",
                            f"{limit:.0f}",
                            str(c),
                            str(r["n"]),
                            str(r["errors"]),
                            f"{r['qps']:.1f}",
                            f"{r['p50']:.1f}",
                            f"{r['p95']:.1f}",
                            f"{r['p99']:.1f}",
                            f"{r['p50'] / bare_ms:.2f}",
                            f"{r['qps'] / limit:.2f}",
                        ]
                    )
    body = (
        f"## Serving ({today()})\n\n`uv run python -m bench.serve --data DATA "
        + " ".join(f"--encoder {e}" for e in args.encoder)
        + " ".join(f" --runtime {r}" for r in runtimes)
        + f"` on {machine()}.\nServer: `latent-search serve` (uvicorn, one process) on 127.0.0.1; client: "
        "keep-alive threads in another process on the same cores, POST /search k=10 with CIFAR-10 test JPEGs; at "
        f"most {args.requests} requests or {args.seconds:.0f} s per level. bare = decode + embed + search of one "
        "image in-process (median); encoder img/s = the runtime at batch 32 with the service's threads; HTTP = a "
        f"bare FastAPI endpoint reading the same upload, {http_qps:.0f} q/s at concurrency 16 with the same client; "
        "limit = 1 / (1 / encoder + 1 / HTTP).\n\n"
        + table(
            [
                "encoder",
                "runtime",
                "index",
                "bare ms",
                "encoder img/s",
                "limit q/s",
                "concurrency",
                "requests",
                "errors",
                "q/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "p50 / bare",
                "q/s / limit",
            ],
            rows,
        )
    )
    print(body)
    if not args.no_write:
        write_section("serve", body)


if __name__ == "__main__":
    main()
