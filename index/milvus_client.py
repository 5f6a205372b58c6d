"""Connections to Milvus for the Milvus backend (index.milvus_index): one client per URI and
process, Lite folders by absolute path, and errors that say what to start or install."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from index.vector_store import BackendUnavailableError

CONNECT_TIMEOUT_S = 10.0

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


LITE_IN_INDEX = "milvus.db"  # the Milvus Lite folder inside the index directory, when no URI is given


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def absolute(uri: str) -> str:
    """A Lite file's path made absolute (the manifest must find it from any working directory)."""
    return uri if is_remote(uri) else str(Path(uri).expanduser().resolve())


def connect(uri: str) -> Any:
    """One client per URI and process (Milvus Lite allows one process per file)."""
    with _clients_lock:
        if uri not in _clients:
            try:
                from pymilvus import MilvusClient
            except ImportError as exc:  # pragma: no cover - a dependency of the project
                raise BackendUnavailableError("the Milvus backend needs `pip install pymilvus milvus-lite`") from exc
            if not is_remote(uri):
                # Milvus Lite serves gRPC inside this process and logs a traceback for every call
                # it does not implement (pymilvus asks for a timestamp it then makes itself).
                logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            try:
                _clients[uri] = MilvusClient(uri, timeout=CONNECT_TIMEOUT_S)
            except Exception as exc:
                hint = (
                    "start the Milvus server or fix LATENT_SEARCH_MILVUS_URI / --milvus-uri"
                    if is_remote(uri)
                    else "a Milvus Lite file needs `pip install milvus-lite` (Linux or macOS) and a writable "
                    "folder; one process at a time may open it (use a Milvus server for several replicas)"
                )
                raise BackendUnavailableError(f"cannot open Milvus at {uri!r}: {exc}; {hint}") from exc
        return _clients[uri]


def disconnect(uri: str) -> None:
    """Close this process's client for `uri` (another process may then open a Lite file)."""
    with _clients_lock:
        client = _clients.pop(absolute(uri), None)
    if client is not None:
        client.close()
