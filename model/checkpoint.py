"""Atomic checkpoint files and the self-describing `encoder.pt`.

`encoder.pt` holds only plain containers and tensors (loadable with weights_only=True):
    {"format": ENCODER_FORMAT, "config": EncoderConfig as dict, "state_dict": f's weights,
     "feature_dim": int, "trained": {...provenance...}}
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import torch

from model.config import EncoderConfig
from model.encoder import build_backbone

ENCODER_FORMAT = "latent-search-encoder/1"


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write `path` through a temporary file in the same folder: fsync, then rename over it.

    A crash at any point leaves either the old file or the new one, never half of one. The file
    is 0644 (not mkstemp's 0600): a service running as another user must be able to read it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    with atomic_file(path) as fh:
        torch.save(obj, fh)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_encoder(
    path: str | os.PathLike[str],
    backbone: torch.nn.Module,
    cfg: EncoderConfig,
    feature_dim: int,
    trained: dict[str, Any] | None = None,
) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    atomic_torch_save(
        {
            "format": ENCODER_FORMAT,
            "config": asdict(cfg),
            "state_dict": state,
            "feature_dim": feature_dim,
            "trained": trained or {},
        },
        path,
    )


def load_encoder_file(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, EncoderConfig, dict[str, Any]]:
    """Rebuild f from `encoder.pt`: (backbone in eval mode on CPU, its config, the raw payload)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"encoder file {str(p)!r} not found; train one with `latent-search train` (it writes runs/NAME/encoder.pt)"
        )
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{str(p)!r} is not a readable encoder checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != ENCODER_FORMAT:
        raise ValueError(
            f"{str(p)!r} is not a latent-search encoder (expected format {ENCODER_FORMAT!r}); "
            "pass the encoder.pt from a training run, not checkpoint.pt"
        )
    cfg = EncoderConfig(**payload["config"])
    backbone, _ = build_backbone(cfg)
    backbone.load_state_dict(payload["state_dict"])
    backbone.eval()
    return backbone, cfg, payload
