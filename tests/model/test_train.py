"""A few real CPU training steps on tiny synthetic collections; exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.embedding.embed import load_encoder
from model.embedding.encoder_file import load_encoder_file
from model.training.budget import crop_size_at
from model.training.config import RunConfig
from model.training.train import NonFiniteLossError, train
from tests.conftest import tiny_config


def test_train_on_folder_writes_a_complete_run(image_folder: Path, tmp_path: Path) -> None:
    result = train(tiny_config(), str(image_folder), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.finished and result.step == 2 * (36 // 8)
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt", "encoder.pt"}
    cfg = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert cfg.train.batch_size == 8
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(steps) == result.step and len(epochs) == 2
    assert all(set(r) >= {"loss", "lr", "images_per_s"} for r in steps)
    assert all(set(r) >= {"alignment", "uniformity", "feature_std", "effective_rank", "knn_top1"} for r in epochs)
    # encoder.pt alone rebuilds f (weights_only load) and embeds to unit vectors.
    _, enc_cfg, payload = load_encoder_file(run / "encoder.pt")
    assert enc_cfg == cfg.encoder and payload["feature_dim"] == 32
    vecs = load_encoder(run / "encoder.pt").embed_uint8(torch.zeros(3, 3, 32, 32, dtype=torch.uint8))
    assert vecs.shape == (3, 32)
    assert torch.allclose(torch.from_numpy(vecs).norm(dim=1), torch.ones(3), atol=1e-5)


def test_train_on_tar_archive(image_tar: Path, tmp_path: Path) -> None:
    result = train(tiny_config(epochs=1, knn_every=0), str(image_tar), tmp_path / "run", progress=False)
    assert result.finished and (tmp_path / "run" / "encoder.pt").exists()


def test_supcon_option_trains(image_folder: Path, tmp_path: Path) -> None:
    result = train(tiny_config(epochs=1, loss="supcon"), str(image_folder), tmp_path / "run", progress=False)
    assert result.finished and result.loss == result.loss  # finite, not NaN


def test_resume_reproduces_an_uninterrupted_run(image_folder: Path, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=2, knn_every=0)
    full = train(cfg, str(image_folder), tmp_path / "full", progress=False)
    # Stop mid-epoch (step 6 of 8; 4 steps per epoch), then resume to the end.
    part = train(cfg, str(image_folder), tmp_path / "part", progress=False, stop_at_step=6)
    assert not part.finished and part.step == 6
    resumed = train(cfg, str(image_folder), tmp_path / "part", resume=True, progress=False)
    assert resumed.step == full.step
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    steps = [
        json.loads(r)["step"]
        for r in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
        if json.loads(r)["kind"] == "step"
    ]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_refuses_to_overwrite_or_resume_nothing(image_folder: Path, tmp_path: Path) -> None:
    train(tiny_config(epochs=1, knn_every=0), str(image_folder), tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(epochs=1), str(image_folder), tmp_path / "run", progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config(), str(image_folder), tmp_path / "other", resume=True, progress=False)


def test_non_finite_loss_stops_with_a_clear_error(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match="diverged"):
        train(tiny_config(lr=1e30, epochs=1), str(image_folder), tmp_path / "run", progress=False)


def test_small_collections_train_with_a_smaller_batch(image_folder: Path, tmp_path: Path) -> None:
    cfg = tiny_config(batch_size=512, epochs=2, knn_every=0)
    result = train(cfg, str(image_folder), tmp_path / "run", progress=False)
    assert result.finished and result.step == 2  # one batch of all 36 training images per epoch


def test_progressive_resizing_schedule() -> None:
    from model.training.config import AugmentConfig

    cfg = AugmentConfig(crop_size=32, crop_size_min=16, crop_ramp_end=0.5)
    sizes = [crop_size_at(cfg, s, 100) for s in range(100)]
    assert sizes[0] == 16 and sizes[-1] == 32 and sizes[50] == 32
    assert sizes == sorted(sizes) and all(s % 4 == 0 for s in sizes)
    assert crop_size_at(AugmentConfig(crop_size=32), 0, 100) == 32


def test_collections_over_the_cache_limit_stream_through_workers(image_tar: Path, tmp_path: Path) -> None:
    # A 1-byte cache limit forces the DataLoader path (decode on the fly, 2 workers).
    cfg = tiny_config(epochs=2, knn_every=0, cache_max_bytes=1, num_workers=2)
    result = train(cfg, str(image_tar), tmp_path / "run", progress=False)
    assert result.finished and result.step == 2 * (54 // 8)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "epoch" for r in rows) == 2 and all(r["loss"] == r["loss"] for r in rows)


def test_encoder_file_is_readable_by_other_users(image_folder: Path, tmp_path: Path) -> None:
    # A service in a container runs as another user than the training job that wrote the file.
    train(tiny_config(epochs=1, knn_every=0), str(image_folder), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "encoder.pt").stat().st_mode & 0o044 == 0o044


def test_stop_after_minutes_checkpoints_this_call_and_resumes(image_folder: Path, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1, knn_every=0)
    # A budget shorter than one step: the call stops after its first step, resumable.
    part = train(cfg, str(image_folder), tmp_path / "run", progress=False, stop_after_minutes=1e-9)
    assert part.step == 1 and not part.finished
    again = train(cfg, str(image_folder), tmp_path / "run", resume=True, progress=False, stop_after_minutes=1e-9)
    assert again.step == 2  # the budget counts from this call's start, not the run's
    done = train(cfg, str(image_folder), tmp_path / "run", resume=True, progress=False)
    assert done.finished
    # Wall-clock time (decode, evaluation, saving included) adds up across the three calls.
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in rows if r["kind"] == "epoch")
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert 0 < epoch["seconds"] < epoch["wall_seconds"] <= saved["wall_seconds"]
