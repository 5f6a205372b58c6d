"""Data-parallel embedding for the index build: 2 gloo processes give the 1-process index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from index.build import build_index
from index.export import export_embeddings
from index.versions import read_manifest
from model.common.processes import setup, teardown
from model.embedding.embed import load_encoder
from tests.multiproc import run_processes


def _build_worker(rank: int, encoder: Path, data: Path, out: Path) -> None:
    info, device, _ = setup("cpu")
    assert info.world_size == 2 and info.rank == rank
    report = build_index(load_encoder(encoder, str(device)), data, out, progress=False)
    assert (report is not None) == (rank == 0)  # rank 0 alone builds and publishes
    teardown()


@pytest.mark.slow
def test_two_process_embedding_builds_the_same_index(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    first = sorted(data.rglob("*.png"))[0]
    # Two copies side by side land in different shares: duplicates must be found across processes.
    (data / "copy1.png").write_bytes(first.read_bytes())
    (data / "copy2.png").write_bytes(first.read_bytes())
    (data / "bad.jpg").write_bytes(b"not an image")
    single = build_index(load_encoder(tiny_encoder), data, tmp_path / "one", progress=False)
    assert single is not None
    run_processes(2, _build_worker, tiny_encoder, data, tmp_path / "two")

    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    for key in ("count", "duplicates", "skipped_unreadable", "images_seen", "index_type"):
        assert one[key] == two[key], key
    assert one["count"] == 54 and one["duplicates"] == 2 and one["skipped_unreadable"] == 1
    export_embeddings(tmp_path / "one", tmp_path / "one.npz")
    export_embeddings(tmp_path / "two", tmp_path / "two.npz")
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    # Same ids for the same images in the same (collection) order, same vectors.
    assert np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["uris"], b["uris"])
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=1e-5)
    # Every process put its share's bytes in the one image store.
    stored = [p for p in (tmp_path / "two" / "images").rglob("*") if p.is_file()]
    assert len(stored) == one["count"]
