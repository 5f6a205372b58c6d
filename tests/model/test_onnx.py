"""The ONNX export (model.embedding.onnx_export) run by ONNX Runtime (model.embedding.onnx_runtime) against torch:
the same embeddings and the same neighbours for every preset's encoder, and the runtime choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from index.build import build_index
from index.store import load
from model.embedding.backbones import build_backbone
from model.embedding.embed import load_encoder
from model.embedding.encoder_file import save_encoder
from model.embedding.onnx_export import export_onnx
from model.embedding.onnx_runtime import OnnxEncoder, export_source_sha256
from model.embedding.runtime import Runtime, embed_bytes, load_runtime, onnx_path_for
from model.training.presets import PRESETS, preset


def untrained(name: str, folder: Path, seed: int = 0) -> Path:
    cfg = preset(name).encoder
    torch.manual_seed(seed)
    backbone, dim = build_backbone(cfg)
    path = folder / f"{name}.pt"
    save_encoder(path, backbone.eval(), cfg, dim)
    return path


@pytest.mark.parametrize("name", PRESETS)
def test_onnx_gives_torch_embeddings_and_neighbours(name: str, image_folder: Path, tmp_path: Path) -> None:
    path = untrained(name, tmp_path)
    torch_encoder = load_encoder(path)
    onnx_encoder = OnnxEncoder(export_onnx(path), threads=2)
    assert onnx_encoder.checksum == torch_encoder.checksum  # an index built by one is served by the other
    assert (onnx_encoder.image_size, onnx_encoder.feature_dim) == (torch_encoder.image_size, torch_encoder.feature_dim)
    blobs = [p.read_bytes() for p in sorted(image_folder.rglob("*.png"))[:12]]
    want, got = embed_bytes(torch_encoder, blobs), embed_bytes(onnx_encoder, blobs)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.abs(got - want).max() < 1e-4
    # Any batch size: the batch axis is dynamic.
    np.testing.assert_allclose(onnx_encoder.embed_pixels(np.zeros((0, 1, 1, 3), np.uint8)).shape, (0, want.shape[1]))
    index = build_index(torch_encoder, image_folder, tmp_path / "idx", progress=False)
    assert index is not None
    opened = load(tmp_path / "idx", encoder_checksum=onnx_encoder.checksum)
    (_, by_torch), (_, by_onnx) = opened.search(want, 10), opened.search(got, 10)
    for a, b in zip(by_torch, by_onnx, strict=True):
        assert a.tolist() == b.tolist()


def test_auto_runtime_uses_an_export_made_from_these_weights_only(tmp_path: Path) -> None:
    path = untrained("cpu-small", tmp_path)
    assert load_runtime(path).runtime == "torch"  # no export yet
    export_onnx(path)
    assert load_runtime(path).runtime == "onnx"
    assert load_runtime(path, Runtime.TORCH).runtime == "torch"
    assert load_runtime(onnx_path_for(path)).runtime == "onnx"
    # Retrained in place: the old export no longer matches and is ignored until exported again.
    (tmp_path / "other").mkdir()
    shutil.copy(untrained("cpu-small", tmp_path / "other", seed=1), path)
    assert export_source_sha256(onnx_path_for(path)) != load_encoder(path).checksum
    assert load_runtime(path).runtime == "torch"


def test_not_an_export_gives_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "encoder.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        load_runtime(bogus)
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        load_runtime(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="onnx runtime"):
        load_runtime(tmp_path / "missing.onnx", Runtime.TORCH)


def test_a_large_batch_is_embedded_in_bounded_runs_with_the_same_vectors(tmp_path: Path) -> None:
    path = export_onnx(untrained("cpu-small", tmp_path))
    side = preset("cpu-small").encoder.image_size
    capped = OnnxEncoder(path, threads=1, run_pixels=3 * side * side)  # 3 images a run
    whole = OnnxEncoder(path, threads=1, run_pixels=100 * side * side)
    assert (capped.run_images, whole.run_images) == (3, 100)
    pixels = np.random.default_rng(0).integers(0, 255, (10, side, side, 3), dtype=np.uint8)
    one_by_one = np.concatenate([whole.embed_pixels(p[None]) for p in pixels])
    np.testing.assert_allclose(capped.embed_pixels(pixels), one_by_one, atol=1e-5)
    np.testing.assert_allclose(whole.embed_pixels(pixels), one_by_one, atol=1e-5)
