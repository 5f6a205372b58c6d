"""Shared helpers for the index tests: a brute-force reference, catalog rows, small indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.build import build_index
from index.catalog import Catalog, NewImage
from index.faiss_index import FaissStore
from index.store import ImageIndex
from index.versions import Manifest
from model.embedding.embed import load_encoder


def brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries.astype(np.float64) @ base.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


def rows_for(n: int, offset: int = 0) -> list[NewImage]:
    return [NewImage(f"img/{i}.png", f"{i:064x}", 10, 10, None) for i in range(offset, offset + n)]


def make_index(tmp_path: Path, vectors: np.ndarray, factory: str = "Flat") -> ImageIndex:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    ids = np.array([i for i, _ in catalog.add(rows_for(len(vectors)))], dtype=np.int64)
    manifest = Manifest(version="test", encoder={}, dim=vectors.shape[1], count=len(ids), index_type=factory)
    return ImageIndex(FaissStore.build(vectors, ids, factory), catalog, manifest, None)


@pytest.fixture()
def built(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> Path:
    root = tmp_path / "idx"
    build_index(load_encoder(tiny_encoder), image_folder, root, progress=False)
    return root
