"""Shared fixtures: small synthetic image collections (no dataset needed)."""

from __future__ import annotations

import io
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.embedding.spec import EncoderConfig
from model.training.config import AugmentConfig, RunConfig, TrainConfig

CLASSES = ("stripes_h", "stripes_v", "checker")


def pattern_image(cls: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A noisy image whose structure depends on its class: easy for kNN, not trivial."""
    y, x = np.mgrid[0:size, 0:size]
    period = rng.integers(4, 8)
    phase = rng.integers(0, period)
    if cls == 0:
        base = ((y + phase) // (period // 2)) % 2
    elif cls == 1:
        base = ((x + phase) // (period // 2)) % 2
    else:
        base = (((x + phase) // period) + ((y + phase) // period)) % 2
    colour = rng.uniform(0.3, 1.0, size=3)
    img = base[..., None] * colour + rng.normal(0, 0.08, size=(size, size, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def pattern_png(seed: int) -> bytes:
    """A fresh PNG (not in the fixture collections, whose generators use other seeds)."""
    return encode(pattern_image(seed % 3, np.random.default_rng(1000 + seed)), "PNG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_collection(root: Path, per_class_train: int = 12, per_class_test: int = 6, seed: int = 0) -> Path:
    """root/{train,test}/<class>/<n>.{png,jpg}: mixed formats, labelled, with a split."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                fmt, ext = (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"))[i % 3]
                (folder / f"{i:03d}.{ext}").write_bytes(encode(pattern_image(c, rng), fmt))
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_collection(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def image_tar(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("archive") / "images.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(image_folder, arcname=".")
    return path


def tiny_config(**train: object) -> RunConfig:
    """A model small enough that a training step takes milliseconds."""
    t = {
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.05,
        "log_every": 1,
        "knn_every": 1,
        "knn_k": 5,
        "health_sample": 16,
        "amp": False,
        "channels_last": True,
        **train,
    }
    return RunConfig(
        preset="test",
        encoder=EncoderConfig(arch="small_cnn", width=4, proj_hidden=16, proj_out=8, image_size=32),
        augment=AugmentConfig(crop_size=16),
        train=TrainConfig(**t),  # type: ignore[arg-type]
    )


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small CNN saved as encoder.pt (enough to exercise embedding and serving)."""
    from model.embedding.backbones import build_backbone
    from model.embedding.encoder_file import save_encoder

    cfg = EncoderConfig(arch="small_cnn", width=4, image_size=32)
    torch.manual_seed(0)
    backbone, dim = build_backbone(cfg)
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    save_encoder(path, backbone.eval(), cfg, dim)
    return path


def clustered_vectors(n: int, dim: int, clusters: int, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Unit vectors drawn around random centres: structured like real embeddings, not noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    assign = rng.integers(0, clusters, n)
    x = centres[assign] + spread * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)
