"""The training precision / memory-format chooser: decisions from injected timings, and a real run."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from model.embedding.embed import embed_tensor
from model.training.precision import Candidate, choose_speed, time_candidates, training_step_timer
from model.training.simclr import SimCLRModel
from model.training.train import train
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def fake_timer(seconds: dict[str, float], calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    def run(cand: Candidate) -> float:
        if calls is not None:
            calls.append(cand.name)
        return seconds[cand.name]

    return run


EMULATED = {"fp32+channels_last": 1.0, "fp32+nchw": 1.3, "bf16+channels_last": 13.0, "bf16+nchw": 14.0}
NATIVE = {"fp32+channels_last": 1.0, "fp32+nchw": 1.3, "bf16+channels_last": 0.5, "bf16+nchw": 0.7}


def test_picks_fp32_when_bf16_is_slower() -> None:
    choice = choose_speed(amp=None, channels_last=None, device=CPU, run_step=fake_timer(EMULATED), native_bf16=False)
    assert (choice.bf16, choice.channels_last) == (False, True)
    assert choice.record()["precision"] == "fp32"


def test_picks_bf16_when_it_is_faster() -> None:
    choice = choose_speed(amp=None, channels_last=None, device=CPU, run_step=fake_timer(NATIVE), native_bf16=True)
    assert (choice.bf16, choice.channels_last) == (True, True)
    assert choice.step_seconds == pytest.approx(NATIVE)


def test_picks_the_faster_layout_too() -> None:
    seconds = {**EMULATED, "fp32+channels_last": 2.0}
    choice = choose_speed(amp=None, channels_last=None, device=CPU, run_step=fake_timer(seconds), native_bf16=False)
    assert (choice.bf16, choice.channels_last) == (False, False)


def test_an_explicit_setting_is_kept_without_timing() -> None:
    calls: list[str] = []
    choice = choose_speed(amp=False, channels_last=True, device=CPU, run_step=fake_timer(EMULATED, calls))
    assert (choice.bf16, choice.channels_last, calls) == (False, True, [])


def test_hopeless_candidates_are_cut_after_two_steps() -> None:
    calls: list[str] = []
    timings = time_candidates(
        [Candidate(False, True), Candidate(True, True), Candidate(True, False)], fake_timer(EMULATED, calls)
    )
    # fp32: a warm-up and 3 timed steps; bf16+channels_last: cut after 2; bf16+nchw: not tried.
    assert calls == ["fp32+channels_last"] * 4 + ["bf16+channels_last"] * 2
    assert timings["bf16+channels_last"] == 13.0 and math.isinf(timings["bf16+nchw"])


def test_forced_bf16_on_a_cpu_without_it_warns_how_much_slower(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="model.training.precision"):
        choice = choose_speed(
            amp=True, channels_last=True, device=CPU, run_step=fake_timer(EMULATED), native_bf16=False
        )
    assert choice.bf16  # forced stays forced
    assert "13.0x as long as in fp32" in caplog.text and "train.amp=false" in caplog.text


def test_forced_bf16_on_a_native_cpu_is_not_timed() -> None:
    calls: list[str] = []
    timer = fake_timer(NATIVE, calls)
    choice = choose_speed(amp=True, channels_last=True, device=CPU, run_step=timer, native_bf16=True)
    assert choice.bf16 and calls == []


def test_the_real_timer_leaves_the_model_untouched() -> None:
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config().encoder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    run = training_step_timer(model, tiny_config(), CPU)
    assert run(Candidate(False, True)) > 0 and run(Candidate(True, False)) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_run_records_the_measured_choice(image_folder: Path, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1, knn_every=0, amp=None, channels_last=None)
    train(cfg, str(image_folder), tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    saved, speed = record["train"], record["speed"]
    assert isinstance(saved["amp"], bool) and isinstance(saved["channels_last"], bool)
    assert speed["precision"] == ("bf16" if saved["amp"] else "fp32")
    assert len(speed["trial_step_seconds"]) == 4
    assert {"cpu", "cpu_capability", "usable_cores"} <= set(speed["machine"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["precision"] for r in rows if r["kind"] == "step"} == {speed["precision"]}
    payload = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)
    assert payload["trained"]["precision"] == speed["precision"]


class _Probe(torch.nn.Module):
    """Records the autocast state and input dtype that inference runs it with."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_autocast_enabled("cpu"), x.dtype))
        return self.linear(x.mean(dim=(2, 3)))


def test_embedding_on_the_cpu_never_runs_bf16() -> None:
    probe = _Probe()
    out = embed_tensor(probe, torch.zeros(5, 3, 8, 8, dtype=torch.uint8), (0.5,) * 3, (0.5,) * 3, 2, CPU)
    assert out.dtype == torch.float32 and out.shape == (5, 4)
    assert probe.seen and all(s == (False, torch.float32) for s in probe.seen)
