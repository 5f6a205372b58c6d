"""What a finished run leaves for indexing and serving: encoder.pt, and encoder.onnx beside it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.adapt import keep_better
from model.checkpoint import save_encoder
from model.config import RunConfig
from model.feed import EvalSet
from model.hardware import describe
from model.run_dir import ENCODER
from model.train_state import TrainState

LOG = logging.getLogger(__name__)


def release(
    state: TrainState,
    cfg: RunConfig,
    evalset: EvalSet,
    data: str,
    run_dir: Path,
    *,
    adapt: bool,
    device: torch.device,
) -> str | None:
    """Write encoder.pt and encoder.onnx; with `adapt`, of whichever of the adapted and the
    starting network retrieves edited copies better (model.adapt). Returns what to tell the user."""
    backbone, adaptation, message = state.model.backbone, None, None
    if adapt:
        backbone, adaptation = keep_better(state.model.backbone, cfg.encoder, evalset.heldout, device)
        (run_dir / "adaptation.json").write_text(json.dumps(adaptation, indent=2) + "\n")
        message = f"kept the {adaptation['kept']} network (copy retrieval on held-out images, adaptation.json)"
    encoder_path = run_dir / ENCODER
    save_encoder(
        encoder_path,
        backbone,
        cfg.encoder,
        state.model.feature_dim,
        trained={
            "adaptation": adaptation,
            "data": str(data),
            "step": state.step,
            "total_steps": cfg.train.total_steps,
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
        from model.onnx_export import export_onnx

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
