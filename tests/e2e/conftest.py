"""Real uvicorn servers on loopback, in a background thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.main import create_app
from tests.app.conftest import index_copy, make_settings, tiny_index  # noqa: F401  (fixtures)
from tests.conftest import free_port


def wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base}/ready", timeout=1)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"server at {base} not ready in {timeout} s: {last}")


@contextmanager
def run_server(encoder: Path, index: Path, **settings: object) -> Iterator[str]:
    port = free_port()
    app = create_app(make_settings(encoder, index, **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture()
def live_server(tiny_encoder: Path, tiny_index: Path) -> Iterator[str]:  # noqa: F811
    with run_server(tiny_encoder, tiny_index) as base:
        yield base
