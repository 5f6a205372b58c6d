"""What a finished run leaves for indexing and serving: encoder.pt, and encoder.onnx beside it."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.adapt import keep_better, keep_better_than_rival
from model.checkpoint import save_encoder
from model.config import RunConfig
from model.feed import EvalSet
from model.hardware import describe
from model.pretrained import export_as_is
from model.run_dir import CANDIDATES, ENCODER
from model.train_state import TrainState

LOG = logging.getLogger(__name__)


def release(
    state: TrainState,
    cfg: RunConfig,
    evalset: EvalSet,
    data: str,
    run_dir: Path,
    *,
    final: bool,
    device: torch.device,
) -> str | None:
    """Write encoder.pt and encoder.onnx. At the end of a run, of whichever network retrieves
    edited copies of held-out images better (model.adapt): the adapted one or the pretrained one
    it started from; the one trained from scratch or the run's rival as it ships. Returns what to
    tell the user."""
    backbone, enc_cfg, dim = state.model.backbone, cfg.encoder, state.model.feature_dim
    adaptation, choice, message = None, None, None
    trained_here = (state.model.backbone, cfg.encoder, state.model.feature_dim)
    if final:  # the networks compared and not kept, as encoder files: `eval` reports their kNN too
        shutil.rmtree(run_dir / CANDIDATES, ignore_errors=True)
        (run_dir / CANDIDATES).mkdir()
    if final and cfg.encoder.init:
        backbone, adaptation = keep_better(backbone, enc_cfg, evalset.heldout, device)
        (run_dir / "adaptation.json").write_text(json.dumps(adaptation, indent=2) + "\n")
        message = f"kept the {adaptation['kept']} network (copy retrieval on held-out images, adaptation.json)"
        if adaptation["kept"] == "adapted":
            export_as_is(cfg.encoder.init, run_dir / CANDIDATES / "pretrained.pt", cfg.encoder.image_size)
        else:
            save_encoder(run_dir / CANDIDATES / "adapted.pt", *trained_here)
    elif final and cfg.train.rival:
        backbone, enc_cfg, rival_dim, choice = keep_better_than_rival(
            backbone, enc_cfg, cfg.train.rival, evalset.heldout, device
        )
        dim = rival_dim or dim
        (run_dir / "choice.json").write_text(json.dumps(choice, indent=2) + "\n")
        if choice["kept"] != "trained":
            save_encoder(run_dir / CANDIDATES / "trained.pt", *trained_here)
        elif "skipped" not in choice:
            rival = cfg.train.rival
            export_as_is(rival, run_dir / CANDIDATES / f"{rival}.pt", choice["rival_image_size"])
        if "skipped" not in choice:
            scores = choice["copy_retrieval"]
            message = (
                f"kept the {choice['kept']} network: copy retrieval on held-out images, trained "
                f"{scores['trained']['overall']:.3f} vs {cfg.train.rival} as it ships "
                f"{scores[cfg.train.rival]['overall']:.3f} (choice.json)"
            )
    encoder_path = run_dir / ENCODER
    save_encoder(
        encoder_path,
        backbone,
        enc_cfg,
        dim,
        trained={
            "adaptation": adaptation,
            "choice": choice,
            "data": str(data),
            "step": state.step,
            "total_steps": cfg.train.total_steps,
            "planned_steps": cfg.train.schedule_steps or cfg.train.total_steps,  # before re-plans
            "replans": len(cfg.train.replans),
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
