"""A real uvicorn server on loopback, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.main import create_app
from tests.app.conftest import make_settings, tiny_index  # noqa: F401  (fixture)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def live_server(tiny_encoder: Path, tiny_index: Path) -> Iterator[str]:  # noqa: F811
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(make_settings(tiny_encoder, tiny_index)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        raise AssertionError("server not ready in 30 s")
    yield base
    server.should_exit = True
    thread.join(10)
