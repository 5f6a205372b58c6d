"""The one index pipeline (index.pipeline): a staged version holds what it was given, and a
broken build is caught before it could be published."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from index.faiss_index import FaissStore
from index.pipeline import BuildOptions, check_built, stage_version
from index.versions import staging_dir
from tests.conftest import clustered_vectors


def test_stage_version_writes_index_and_manifest(tmp_path: Path) -> None:
    vectors = clustered_vectors(300, 16, 5)
    ids = np.arange(100, 400, dtype=np.int64)
    staged = staging_dir(tmp_path)
    index, manifest = stage_version(
        staged, vectors, ids, {"sha256": "e" * 64}, BuildOptions(), data="d", seconds={"embed": 1.5}
    )
    on_disk = json.loads((staged / "manifest.json").read_text())
    assert on_disk == manifest.to_dict() and on_disk["count"] == 300 and on_disk["index_type"] == "Flat"
    assert on_disk["recall_at_10"] == 1.0 and on_disk["data"] == "d"
    assert on_disk["seconds"]["embed"] == 1.5 and on_disk["seconds"]["total"] >= 1.5
    written = faiss.read_index(str(staged / "index.faiss"))
    assert written.ntotal == 300 and index.count == 300


def test_a_build_missing_vectors_or_ids_is_caught(tmp_path: Path) -> None:
    vectors = clustered_vectors(50, 8, 3)
    ids = np.arange(50, dtype=np.int64)
    good = FaissStore.build(vectors, ids, "Flat")
    check_built(good, vectors, ids, exact=True)
    with pytest.raises(RuntimeError, match="holds 49 vectors for 50"):
        check_built(FaissStore.build(vectors[:49], ids[:49], "Flat"), vectors, ids, exact=True)
    shuffled = FaissStore.build(vectors, ids[::-1].copy(), "Flat")  # every vector under another id
    with pytest.raises(RuntimeError, match="did not find its own images"):
        check_built(shuffled, vectors, ids, exact=True)
