"""A training run's folder: checked before anything is written, config.json, metrics.jsonl.

config.json      the resolved RunConfig, with the measurements behind its speed settings
                 and step count
metrics.jsonl    {"kind": "step", ...} every log_every steps, {"kind": "epoch", ...} per epoch
checkpoint.pt    model.training.checkpoint.save_checkpoint, for --resume
encoder.pt       f's weights and config (model.embedding.encoder_file.save_encoder), and encoder.onnx
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.training.checkpoint import load_checkpoint
from model.training.config import RunConfig

CHECKPOINT, ENCODER, CONFIG, METRICS = "checkpoint.pt", "encoder.pt", "config.json", "metrics.jsonl"


def open_run(run_dir: Path, resume: bool, world_size: int) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run), or a clear error about the folder."""
    ckpt, encoder = run_dir / CHECKPOINT, run_dir / ENCODER
    if not resume:
        if ckpt.exists() or encoder.exists():
            raise FileExistsError(
                f"{str(run_dir)!r} already holds a run; pass --resume to continue it or choose another --out"
            )
        return None
    if not ckpt.exists():
        raise FileNotFoundError(f"no checkpoint.pt in {str(run_dir)!r} to resume; drop --resume to start a new run")
    saved = load_checkpoint(ckpt)
    saved_world = int(saved.get("world_size", 1))
    if saved_world != world_size:
        raise ValueError(
            f"{str(run_dir)!r} was trained with {saved_world} process(es) and this is {world_size}; "
            f"resume with the same count (torchrun --nproc-per-node {saved_world}, or no torchrun for 1) "
            "so that the batches and the schedule continue where they stopped"
        )
    return saved


def write_config(run_dir: Path, cfg: RunConfig, **measured: Any) -> None:
    """config.json: the config, and beside it the measurements behind its settings."""
    (run_dir / CONFIG).write_text(json.dumps({**cfg.to_dict(), **measured}, indent=2) + "\n")


class MetricsLog:
    """Append-only JSONL; on resume, rows past the checkpoint's step are dropped first."""

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        if keep_until_step is not None and path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r.get("step", 0) <= keep_until_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif keep_until_step is None:
            path.write_text("")

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
