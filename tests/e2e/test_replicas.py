"""Two `latent-search serve` processes on one real Milvus server (the `milvus` package's
standalone binary, no Docker): a writer and a read replica answer searches alike and the
replica sees the writer's adds and removes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from index.build import build_index
from index.pipeline import BuildOptions
from index.vector_store import BackendChoice
from model.embedding.embed import load_encoder
from tests.conftest import free_port
from tests.conftest import pattern_png as png
from tests.e2e.test_reliability import AUTH, server_process

pytestmark = pytest.mark.slow
pytest.importorskip("milvus", reason="the Milvus server package (a Linux dev dependency) is not installed")

SERVER = """
import signal, sys, time
from milvus import default_server as server
server.set_base_dir(sys.argv[1])
server.listen_port = int(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
server.start()
print("up", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    base = tmp_path_factory.mktemp("milvus-server")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(base), str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is up (about 10 s) or the script died
        assert line.strip() == b"up", f"Milvus server did not start (exit {proc.poll()})"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def search(base: str, seed: int, k: int = 5) -> list[int]:
    r = httpx.post(f"{base}/search", files={"image": ("q.png", png(seed), "image/png")}, params={"k": k}, timeout=30)
    assert r.status_code == 200, r.text
    return [n["id"] for n in r.json()["neighbours"]]


def test_a_writer_and_a_read_replica_on_one_milvus_server(
    tiny_encoder: Path, image_folder: Path, tmp_path: Path, milvus_server: str
) -> None:
    root = tmp_path / "idx"
    options = BuildOptions(map_sample=0, backend=BackendChoice("milvus", milvus_server))
    build_index(load_encoder(tiny_encoder), image_folder, root, options=options, progress=False)
    writer_port, replica_port = free_port(), free_port()
    writer, replica = f"http://127.0.0.1:{writer_port}", f"http://127.0.0.1:{replica_port}"
    env = {"LATENT_SEARCH_MILVUS_URI": milvus_server}
    with (
        server_process(tiny_encoder, root, writer_port, **env),
        server_process(tiny_encoder, root, replica_port, LATENT_SEARCH_READ_REPLICA="true", **env),
    ):
        info = httpx.get(f"{replica}/index").json()
        assert info["backend"] == "milvus" and info["read_replica"] and info["count"] == 54
        assert all(search(writer, s) == search(replica, s) for s in (1, 2, 3))
        r = httpx.post(f"{writer}/images", files={"images": ("n.png", png(777), "image/png")}, headers=AUTH)
        assert r.status_code == 201, r.text
        new_id = r.json()["images"][0]["id"]
        until(lambda: httpx.get(f"{replica}/images/{new_id}").status_code == 200)
        until(lambda: search(replica, 777, 1) == [new_id])
        assert search(writer, 777) == search(replica, 777)
        r = httpx.post(f"{replica}/images", files={"images": ("m.png", png(778), "image/png")}, headers=AUTH)
        assert r.status_code == 409 and "read replica" in r.json()["detail"]
        assert httpx.delete(f"{writer}/images/{new_id}", headers=AUTH).status_code in (200, 204)
        until(lambda: httpx.get(f"{replica}/images/{new_id}").status_code == 404)
        until(lambda: new_id not in search(replica, 777))
        # The replica counts through its own Milvus session: another process's delete shows within the time tick.
        until(lambda: httpx.get(f"{replica}/index").json()["count"] == 54)
