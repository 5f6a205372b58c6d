"""Concurrency and crashes against real servers on loopback (bounded in requests and time)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import pattern_png as png
from tests.e2e.conftest import free_port, run_server, wait_ready

pytestmark = pytest.mark.slow
KEY = "reliability-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def add_one(client: httpx.Client, base: str, seed: int) -> int | None:
    r = client.post(f"{base}/images", files={"images": ("a.png", png(seed), "image/png")}, headers=AUTH, timeout=30)
    return int(r.json()["images"][0]["id"]) if r.status_code == 201 else None


def wait_job(base: str, job_id: str, states: tuple[str, ...], timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/index/rebuild/{job_id}", timeout=5).json()
        if job["state"] in states:
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}")


def test_searches_never_fail_while_images_are_added_and_the_index_swaps(tiny_encoder: Path, index_copy: Path) -> None:
    with run_server(tiny_encoder, index_copy, api_key=KEY, rebuild_duty_cycle=0.2) as base:
        stop = threading.Event()
        results: list[int] = []
        acked: list[int] = []

        def searcher(seed: int) -> None:
            with httpx.Client() as client:
                n = 0
                while not stop.is_set() and n < 400:
                    r = client.post(
                        f"{base}/search",
                        files={"image": ("q.png", png(seed + n), "image/png")},
                        params={"k": 5},
                        timeout=30,
                    )
                    results.append(r.status_code)
                    n += 1

        def writer() -> None:
            with httpx.Client() as client:
                for seed in range(30):
                    if stop.is_set():
                        break
                    got = add_one(client, base, seed)
                    if got is not None:
                        acked.append(got)

        threads = [threading.Thread(target=searcher, args=(i * 1000,)) for i in range(4)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        time.sleep(0.3)
        before = httpx.get(f"{base}/index").json()["version"]
        job = httpx.post(f"{base}/index/rebuild", headers=AUTH).json()
        finished = wait_job(base, job["id"], ("succeeded", "failed"))
        time.sleep(0.3)  # searches on the new version too
        stop.set()
        for t in threads:
            t.join(60)
        assert finished["state"] == "succeeded", finished
        assert results and all(code == 200 for code in results), sorted(set(results))
        info = httpx.get(f"{base}/index").json()
        assert info["version"] != before and info["count"] == 54 + len(acked)
        for image_id in acked:
            assert httpx.get(f"{base}/images/{image_id}").status_code == 200


@contextmanager
def server_process(encoder: Path, index: Path, port: int, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    environment = {**os.environ, "LATENT_SEARCH_API_KEY": KEY, "LATENT_SEARCH_TORCH_THREADS": "1", **env}
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--encoder",
        str(encoder),
        "--index",
        str(index),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_sigkill_mid_rebuild_and_mid_add_loses_nothing_acknowledged(tiny_encoder: Path, index_copy: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with server_process(tiny_encoder, index_copy, port, LATENT_SEARCH_REBUILD_DUTY_CYCLE="0.01") as proc:
        version = httpx.get(f"{base}/index").json()["version"]
        with httpx.Client() as client:
            acked = [i for i in (add_one(client, base, s) for s in range(5)) if i is not None]
        job = httpx.post(f"{base}/index/rebuild", headers=AUTH).json()
        wait_job(base, job["id"], ("running",))
        time.sleep(0.5)  # embedding is done, the duty cycle keeps it sleeping: mid-rebuild
        assert httpx.get(f"{base}/index/rebuild/{job['id']}").json()["state"] == "running"
        proc.send_signal(signal.SIGKILL)
    with server_process(tiny_encoder, index_copy, port) as proc:
        info = httpx.get(f"{base}/index").json()
        assert info["version"] == version and info["count"] == 59
        assert all(httpx.get(f"{base}/images/{i}").status_code == 200 for i in acked)
        assert not list((index_copy / "versions").glob(".tmp-*"))[1:]  # only this process's working copy
        # Now kill it while several adds are in flight.
        acked_during: list[int] = []

        def adder(offset: int) -> None:
            with httpx.Client() as client:
                for s in range(offset, offset + 20):
                    try:
                        got = add_one(client, base, s)
                    except httpx.HTTPError:
                        return
                    if got is not None:
                        acked_during.append(got)

        threads = [threading.Thread(target=adder, args=(100 + 100 * i,)) for i in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked_during) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        for t in threads:
            t.join(30)
    assert len(acked_during) >= 5
    with server_process(tiny_encoder, index_copy, port):
        info = httpx.get(f"{base}/index").json()
        assert info["count"] >= 59 + len(acked_during)
        missing = [i for i in acked_during + acked if httpx.get(f"{base}/images/{i}").status_code != 200]
        assert not missing
        r = httpx.post(f"{base}/search", files={"image": ("q.png", png(100), "image/png")}, params={"k": 3})
        assert r.status_code == 200
