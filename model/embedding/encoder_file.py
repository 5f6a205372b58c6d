"""The self-describing `encoder.pt`, and the files a run leaves beside it.

`encoder.pt` holds only plain containers and tensors (loadable with weights_only=True):
    {"format": ENCODER_FORMAT, "config": EncoderConfig as dict, "state_dict": f's weights,
     "feature_dim": int, "trained": {...provenance...}}
Beside it a training run leaves `candidates/` (the networks it compared and did not keep, as
encoder files) and `choice.json` (the label-free judge's scores and decision).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from model.common.atomic import atomic_file
from model.embedding.backbones import build_backbone
from model.embedding.spec import EncoderConfig

CANDIDATES = "candidates"  # the networks a run compared and did not keep (model.training.release)
CHOICE = "choice.json"  # the judge's scores of each network and its decision (model.training.adapt)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    with atomic_file(path) as fh:
        torch.save(obj, fh)


ENCODER_FORMAT = "latent-search-encoder/1"


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
