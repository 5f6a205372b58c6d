"""The sample collection's real download code against a local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from model.collections.data import load_collection
from model.collections.sample import SampleSpec, SampleUnavailableError, converted_path, download, ensure_sample
from tests.conftest import free_port

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_BATCH = 3
Tiny = tuple[bytes, dict[bytes, dict[bytes, object]]]


def _pickled(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _batch(seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
        b"labels": [int(x) for x in rng.integers(0, 10, PER_BATCH)],
    }


def tiny_cifar_archive() -> Tiny:
    """A .tar.gz in the layout of the CIFAR-10 python release, with 3 images per batch."""
    files = {"batches.meta": _pickled({b"label_names": [n.encode() for n in NAMES]})}
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}".encode()] = _batch(i)
    batches[b"test_batch"] = _batch(99)
    for key, batch in batches.items():
        files[key.decode()] = _pickled(batch)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), batches


class Server:
    """Serves one file; honours Range; can cut the first response after `cut_after` bytes."""

    def __init__(self, payload: bytes, *, ranges: bool = True, cut_after: int | None = None) -> None:
        self.payload, self.ranges, self.cut_after = payload, ranges, cut_after
        self.requests: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng and server.ranges else 0
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-body
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cifar-10-python.tar.gz"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def archive() -> Tiny:
    return tiny_cifar_archive()


def spec_for(payload: bytes) -> SampleSpec:
    return SampleSpec("tiny", "http://unused.invalid/", "tiny.tar.gz", hashlib.md5(payload).hexdigest(), len(payload))


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.__exit__()


def serve(servers: list[Server], payload: bytes, **kw: object) -> Server:
    s = Server(payload, **kw).__enter__()  # type: ignore[arg-type]
    servers.append(s)
    return s


def test_fetch_verify_convert_and_reuse(archive: Tiny, servers: list[Server], tmp_path: Path) -> None:
    payload, batches = archive
    server = serve(servers, payload)
    seen: list[tuple[int, int | None]] = []
    path = ensure_sample(spec_for(payload), cache=tmp_path, url=server.url, progress=lambda d, t: seen.append((d, t)))
    assert path == converted_path(spec_for(payload), tmp_path)
    assert seen and seen[-1] == (len(payload), len(payload))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # The converted tar reads as a collection with the split and class names, pixels intact.
    coll = load_collection(path, 32)
    assert len(coll) == 6 * PER_BATCH
    assert sorted(set(coll.splits)) == ["test", "train"] and coll.splits.count("test") == PER_BATCH
    first = np.asarray(batches[b"data_batch_1"][b"data"]).reshape(-1, 3, 32, 32)[0]  # type: ignore[index]
    assert np.array_equal(coll.images[0].numpy(), first)
    assert coll.classes[int(coll.labels[0])] == NAMES[batches[b"data_batch_1"][b"labels"][0]]  # type: ignore[index]
    # A later call uses the cache: no request reaches the server.
    before = len(server.requests)
    assert ensure_sample(spec_for(payload), cache=tmp_path, url=server.url) == path
    assert len(server.requests) == before


def test_a_cut_download_resumes_where_it_stopped(archive: Tiny, servers: list[Server], tmp_path: Path) -> None:
    payload, _ = archive
    server = serve(servers, payload, cut_after=len(payload) // 3)
    dest = tmp_path / "tiny.tar.gz"
    with pytest.raises(SampleUnavailableError, match="run the command again to resume"):
        download(spec_for(payload), dest, url=server.url)
    part = dest.with_name(dest.name + ".part")
    assert not dest.exists() and part.stat().st_size == len(payload) // 3
    download(spec_for(payload), dest, url=server.url)
    assert dest.read_bytes() == payload and not part.exists()
    assert server.requests == [None, f"bytes={len(payload) // 3}-"]


def test_a_server_without_ranges_restarts_cleanly(archive: Tiny, servers: list[Server], tmp_path: Path) -> None:
    payload, _ = archive
    server = serve(servers, payload, ranges=False)
    dest = tmp_path / "tiny.tar.gz"
    dest.with_name(dest.name + ".part").write_bytes(payload[:100])
    download(spec_for(payload), dest, url=server.url)
    assert dest.read_bytes() == payload


def test_a_checksum_mismatch_is_refused_and_deleted(archive: Tiny, servers: list[Server], tmp_path: Path) -> None:
    payload, _ = archive
    server = serve(servers, payload[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(SampleUnavailableError) as err:
        ensure_sample(spec_for(payload), cache=tmp_path, url=server.url)
    message = str(err.value)
    assert "MD5" in message and "--data" in message and "LATENT_SEARCH_DATA" in message
    assert str(tmp_path / "tiny.tar.gz") in message  # where to copy the archive by hand
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left to be taken for good


def test_an_archive_copied_into_the_cache_by_hand_is_used(archive: Tiny, tmp_path: Path) -> None:
    payload, _ = archive
    (tmp_path / "tiny.tar.gz").write_bytes(payload)
    path = ensure_sample(spec_for(payload), cache=tmp_path, url="http://127.0.0.1:9/never")
    assert len(load_collection(path, 32)) == 6 * PER_BATCH


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    evil = pickle.dumps({b"label_names": [os.system]}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))
    (tmp_path / "tiny.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        ensure_sample(spec_for(buf.getvalue()), cache=tmp_path, url="http://127.0.0.1:9/never")


def test_demo_without_network_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LATENT_SEARCH_DATA"}
    env.update(LATENT_SEARCH_CACHE=str(tmp_path), LATENT_SEARCH_SAMPLE_URL=f"http://127.0.0.1:{free_port()}/x")
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--workdir", str(tmp_path / "demo"), "--no-serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "could not download" in proc.stderr and "--data" in proc.stderr and "LATENT_SEARCH_DATA" in proc.stderr
    assert not any(tmp_path.glob("*.tar"))
