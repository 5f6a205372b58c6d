"""Batched, gradient-free embedding with f in torch: images -> L2-normalised h.

`embed_tensor` is what training and evaluation call on uint8 tensors; `Encoder` is the torch
implementation of the embedding seam (model.embedding.runtime.EncoderRuntime) that index builds, the
service and benchmarks hold.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.common.checksum import file_sha256
from model.embedding.encoder_file import load_encoder_file
from model.embedding.spec import EncoderConfig


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised float, the deterministic transform used for embedding."""
    x = images.float().div_(255)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def embed_tensor(
    backbone: torch.nn.Module,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 512,
    device: torch.device | None = None,
) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> float32 (N, d) unit vectors, on the CPU."""
    device = device or next(backbone.parameters()).device
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = normalize(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            h = backbone(x)
        out.append(F.normalize(h.float(), dim=1).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


@dataclass
class Encoder:
    """A frozen f ready to embed, run by torch (the offline jobs' runtime)."""

    backbone: torch.nn.Module
    config: EncoderConfig
    feature_dim: int
    checksum: str  # sha256 of encoder.pt: ties an index to the encoder that built it
    path: str
    device: torch.device
    runtime: str = "torch"

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def arch(self) -> str:
        return self.config.arch

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def embed_uint8(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, 3, S, S) -> float32 (N, d) unit vectors."""
        vecs = embed_tensor(self.backbone, images, self.config.mean, self.config.std, batch_size, self.device)
        return vecs.numpy().astype(np.float32, copy=False)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> float32 (N, d) unit vectors."""
        if len(pixels) == 0:
            return np.empty((0, self.feature_dim), np.float32)
        return self.embed_uint8(torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).permute(0, 3, 1, 2))


def load_encoder(path: str | os.PathLike[str], device: str | None = None, threads: int | None = None) -> Encoder:
    """encoder.pt -> an Encoder on `device` (default: CUDA when present); `threads` sets torch's
    intra-op threads for this process."""
    if threads is not None:
        torch.set_num_threads(threads)
    backbone, cfg, payload = load_encoder_file(path)
    dev = pick_device(device)
    backbone = backbone.to(dev)
    return Encoder(backbone, cfg, int(payload["feature_dim"]), file_sha256(path), str(Path(path)), dev)
