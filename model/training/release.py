"""What a finished run leaves for indexing and serving: encoder.pt, and encoder.onnx beside it."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.common.hardware import describe
from model.embedding.encoder_file import CANDIDATES, CHOICE, save_encoder
from model.training.adapt import Judging, Network
from model.training.budget import Plan
from model.training.config import RunConfig
from model.training.run_dir import ENCODER
from model.training.state import TrainState

LOG = logging.getLogger(__name__)


def release(
    state: TrainState,
    cfg: RunConfig,
    plan: Plan,
    data: str,
    run_dir: Path,
    *,
    final: bool,
    device: torch.device,
    judging: Judging | None = None,
) -> str | None:
    """Write encoder.pt and encoder.onnx. At the end of a run, of the network the label-free judge
    prefers (`judging`, model.training.adapt): the adapted one or the pretrained one it started
    from; the one trained from scratch or the run's rival as it ships. The others go to
    candidates/ (`eval` reports them too) and the judge's scores to choice.json. Returns what to
    tell the user."""
    trained = Network("adapted" if cfg.encoder.init else "trained", state.model.backbone, cfg.encoder,
                      state.model.feature_dim, shipped=False)  # fmt: skip
    kept, choice, message = trained, None, None
    if final:  # the networks compared and not kept, as encoder files: `eval` reports their kNN too
        shutil.rmtree(run_dir / CANDIDATES, ignore_errors=True)
        (run_dir / CANDIDATES).mkdir()
        if judging is not None:
            result = judging.decide(trained)
            kept, choice, message = result.kept, result.record, result.message
            (run_dir / CHOICE).write_text(json.dumps(choice, indent=2) + "\n")
            for other in result.others:
                save_encoder(run_dir / CANDIDATES / f"{other.name}.pt", other.backbone, other.cfg, other.dim)
    encoder_path = run_dir / ENCODER
    save_encoder(
        encoder_path,
        kept.backbone,
        kept.cfg,
        kept.dim,
        trained={
            "kept": kept.name,
            "choice": choice,
            "data": str(data),
            "step": state.step,
            "total_steps": plan.total_steps,
            "planned_steps": plan.schedule_steps or plan.total_steps,  # before re-plans
            "replans": len(plan.replans),
            "seconds": state.seconds,
            "preset": cfg.preset,
            "processes": state.dist.world_size,
            "precision": "bf16" if cfg.train.amp else "fp32",
            "machine": describe(device),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    export_beside(encoder_path)
    return message


def export_beside(encoder_path: Path) -> None:
    """encoder.onnx beside encoder.pt, for the service; a failure is reported, never fatal."""
    try:
        from model.embedding.onnx_export import export_onnx

        export_onnx(encoder_path)
    except Exception as exc:  # the torch encoder stays usable; the service falls back to it
        LOG.warning(
            "could not export %s to ONNX (%s: %s); serve it with the torch runtime, or retry with "
            "`latent-search export-onnx %s`",
            encoder_path,
            type(exc).__name__,
            exc,
            encoder_path,
        )
