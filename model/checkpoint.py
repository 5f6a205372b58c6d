"""Checkpoints (for --resume) and the self-describing `encoder.pt`, written atomically.

`checkpoint.pt` is one plain dict: config, model and optimizer state, step, times, and every
process's RNG states, so that a resumed run continues exactly where it stopped.

`encoder.pt` holds only plain containers and tensors (loadable with weights_only=True):
    {"format": ENCODER_FORMAT, "config": EncoderConfig as dict, "state_dict": f's weights,
     "feature_dim": int, "trained": {...provenance...}}
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.atomic import atomic_file
from model.config import EncoderConfig
from model.encoder import build_backbone

if TYPE_CHECKING:
    from model.config import RunConfig
    from model.train_state import TrainState

ENCODER_FORMAT = "latent-search-encoder/1"


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    with atomic_file(path) as fh:
        torch.save(obj, fh)


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


def save_checkpoint(path: Path, cfg: RunConfig, state: TrainState) -> None:
    """Rank 0 writes; under data parallelism every process must call it (it gathers RNG states)."""
    aug_states = [state.aug_gen.get_state()]
    if state.dist.enabled:
        aug_states = [torch.empty(0, dtype=torch.uint8)] * state.dist.world_size
        torch.distributed.all_gather_object(aug_states, state.aug_gen.get_state())
    if not state.dist.is_main:
        return
    payload = {
        "config": cfg.to_dict(),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "seconds": state.seconds,
        "pace_mark": list(state.pace_mark),
        "wall_seconds": state.wall_seconds,
        "world_size": state.dist.world_size,
        "aug_rng": aug_states[0],
        "aug_rng_ranks": aug_states,  # each process's augmentation stream, for exact resume
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        payload["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_torch_save(payload, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return payload


def restore(state: TrainState, saved: dict[str, Any]) -> None:
    """Put a checkpoint's weights, optimizer, step, times and this process's RNG streams back."""
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    ranks = saved.get("aug_rng_ranks") or [saved["aug_rng"]]
    state.aug_gen.set_state(ranks[state.dist.rank])
    torch.set_rng_state(saved["torch_rng"])
    if "cuda_rng" in saved and torch.cuda.is_available() and not state.dist.enabled:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    state.step, state.seconds = int(saved["step"]), float(saved["seconds"])
    state.wall_base = float(saved.get("wall_seconds", saved["seconds"]))
    mark = saved.get("pace_mark") or (state.step, state.seconds)
    state.pace_mark = (int(mark[0]), float(mark[1]))
