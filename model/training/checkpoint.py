"""Checkpoints for --resume, written atomically (encoder.pt: model.embedding.encoder_file).

`checkpoint.pt` is one plain dict: config, step plan, model and optimizer state, step, times, and every
process's RNG states, so that a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.embedding.encoder_file import atomic_torch_save

if TYPE_CHECKING:
    from model.training.budget import Plan
    from model.training.config import RunConfig
    from model.training.state import TrainState


def save_checkpoint(path: Path, cfg: RunConfig, plan: Plan, state: TrainState) -> None:
    """Rank 0 writes; under data parallelism every process must call it (it gathers RNG states)."""
    aug_states = [state.aug_gen.get_state()]
    if state.dist.enabled:
        aug_states = [torch.empty(0, dtype=torch.uint8)] * state.dist.world_size
        torch.distributed.all_gather_object(aug_states, state.aug_gen.get_state())
    if not state.dist.is_main:
        return
    payload = {
        "config": cfg.to_dict(),
        "plan": plan.to_dict(),
        "phase_seconds": state.phase_seconds,
        "eval_seconds": state.eval_seconds,
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
    state.phase_seconds = float(saved.get("phase_seconds", state.seconds))
    state.eval_seconds = float(saved.get("eval_seconds", 0.0))
