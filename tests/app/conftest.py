"""A running app (inside its lifespan) over a tiny encoder and index built here."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from index.build import build_index
from index.milvus_client import LITE_IN_INDEX, disconnect
from index.pipeline import BuildOptions
from index.vector_store import BACKENDS, BackendChoice
from model.embedding.embed import load_encoder


@pytest.fixture(scope="session", params=BACKENDS)
def tiny_index(
    request: pytest.FixtureRequest, tiny_encoder: Path, image_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny index, once with its vectors in FAISS and once in Milvus (Lite, inside the index
    directory): every test of the service that uses it runs against both backends."""
    root = tmp_path_factory.mktemp(f"index-{request.param}") / "idx"
    options = BuildOptions(backend=BackendChoice(request.param))
    build_index(load_encoder(tiny_encoder), image_folder, root, options=options, progress=False)
    if request.param == "milvus":
        disconnect(str(root / LITE_IN_INDEX))  # so that copies and other processes can open it cleanly
    return root


@pytest.fixture()
def index_copy(tiny_index: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny index, for tests that write to it."""
    root = tmp_path / "idx"
    shutil.copytree(tiny_index, root)
    return root


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout} s: {client.get('/ready').json()}")


def make_settings(encoder: Path, index: Path, **overrides: object) -> Settings:
    return Settings(encoder_path=encoder, index_path=index, encoder_threads=2, **overrides)  # type: ignore[arg-type]


@pytest.fixture()
def client(tiny_encoder: Path, tiny_index: Path) -> Iterator[TestClient]:
    settings = make_settings(tiny_encoder, tiny_index, max_upload_bytes=200_000, max_images_per_request=4, max_k=100)
    app = create_app(settings)
    with TestClient(app) as c:
        wait_ready(c)
        yield c
