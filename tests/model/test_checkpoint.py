"""Checkpoints (model.training.checkpoint): save and restore give back the exact training state; a file
that is not an encoder is refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.embedding.encoder_file import load_encoder_file
from model.embedding.spec import EncoderConfig
from model.training.budget import Plan
from model.training.checkpoint import load_checkpoint, restore, save_checkpoint
from model.training.config import RunConfig
from model.training.simclr import SimCLRModel
from model.training.state import TrainState


def state(seed: int) -> TrainState:
    torch.manual_seed(seed)
    model = SimCLRModel(EncoderConfig(arch="small_cnn", width=4, proj_hidden=16, proj_out=8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return TrainState(model, opt, torch.Generator().manual_seed(seed))


def test_restore_gives_back_weights_optimizer_step_and_rng(tmp_path: Path) -> None:
    before = state(0)
    x = torch.rand(4, 3, 32, 32)
    before.model(x)[1].sum().backward()
    before.optimizer.step()
    before.step, before.seconds, before.phase_seconds, before.eval_seconds = 17, 3.5, 4.25, 0.5
    torch.rand(5, generator=before.aug_gen)
    plan = Plan(40, 30, 2, ((12, 10.5),), ((24, 0.25),), 90.0)
    save_checkpoint(tmp_path / "ckpt.pt", RunConfig(), plan, before)
    after = state(1)
    saved = load_checkpoint(tmp_path / "ckpt.pt")
    restore(after, saved)
    assert Plan.from_dict(saved["plan"]) == plan  # the run state beside the recipe, back as it was
    assert (after.phase_seconds, after.eval_seconds) == (4.25, 0.5)
    for a, b in zip(before.model.state_dict().values(), after.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert after.optimizer.state_dict()["state"].keys() == before.optimizer.state_dict()["state"].keys()
    assert (after.step, after.seconds) == (17, 3.5)
    assert torch.equal(torch.rand(3, generator=after.aug_gen), torch.rand(3, generator=before.aug_gen))


def test_a_checkpoint_is_not_an_encoder(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "checkpoint.pt", RunConfig(), Plan(1, 1, 1), state(0))
    with pytest.raises(ValueError, match="not a latent-search encoder"):
        load_encoder_file(tmp_path / "checkpoint.pt")
    with pytest.raises(FileNotFoundError, match="latent-search train"):
        load_encoder_file(tmp_path / "missing.pt")
