"""The command's wall clock (model.training.timeline): what the training phase gets, and a budget
too short to train said at once with the budget that would do."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from model.training import timeline as timeline_module
from model.training import train as train_module
from model.training.timeline import MIN_TRAINING_SECONDS, Timeline, clock_text
from model.training.train import train
from tests.model.conftest import budgeted


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_training_phase_gets_what_is_left_after_the_end_is_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(timeline_module.time, "perf_counter", clock)
    line = Timeline(10.0, started=100.0)
    clock.now = 160.0  # a minute of decoding and trials
    left = 600 - 60
    assert line.left() == left
    # 30 s for the encoder choice, SAVE_SECONDS for saving, 2 % of the budget as margin
    assert line.training_seconds(30.0) == pytest.approx(left - 30 - timeline_module.SAVE_SECONDS - 12)
    assert line.too_short(30.0) is None
    clock.now = 100.0 + 540.0  # nine of ten minutes gone
    message = line.too_short(30.0)
    assert message is not None and "--minutes 10 is too short" in message
    need = int(message.split("use --minutes ")[1].split()[0])
    # the budget it names leaves at least MIN_TRAINING_SECONDS to train
    assert Timeline(need, 100.0).training_seconds(30.0) >= MIN_TRAINING_SECONDS
    assert not Timeline(0.0, 100.0).budgeted and Timeline(0.0, 100.0).too_short(1e6) is None
    assert clock_text(125.4) == "2:05" and clock_text(-3) == "0:00"


class FakeJudging:
    """Stands for the shipped half of the choice: predicts 2 s for the other half."""

    def __init__(self, *args: object) -> None:
        self.decided = False

    def predicted_seconds(self, cfg: object) -> float:
        return 2.0

    def decide(self, trained):  # type: ignore[no-untyped-def]
        from model.training.adapt import Choice

        self.decided = True
        return Choice(trained, [], {"chosen": trained.name, "message": "kept trained (fake judge)"})


def test_the_choice_at_the_end_is_planned_for(fixed_clock: None, monkeypatch: pytest.MonkeyPatch, image_folder: Path,
                                              tmp_path: Path) -> None:  # fmt: skip
    """6 s of budget, 2 s predicted for the judge's second half: the steps get 4 s, so
    int(0.97 * 4 * 16) = 62 steps at 1/16 s, and the judge is called at the end."""
    judgings: list[FakeJudging] = []
    monkeypatch.setattr(train_module, "Judging", lambda *a: judgings.append(FakeJudging()) or judgings[-1])
    cfg = budgeted(rival="efficientnet_lite0")
    result = train(cfg, str(image_folder), tmp_path / "run", progress=False)
    assert result.total_steps == 62 and result.finished
    assert len(judgings) == 1 and judgings[0].decided
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["plan"]["budget_seconds"] == pytest.approx(4.0)


def test_a_budget_too_short_to_train_says_so_and_what_would_do(
    fixed_clock: None, monkeypatch: pytest.MonkeyPatch, image_folder: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(timeline_module.Timeline, "elapsed", lambda self: 5.5)  # 5.5 s of 6 already gone
    with caplog.at_level(logging.WARNING, logger="model.training.train"):
        result = train(budgeted(), str(image_folder), tmp_path / "run", progress=False)
    assert "--minutes 0.1 is too short to train" in caplog.text and "use --minutes 2 or more" in caplog.text
    assert result.finished and result.step >= 1  # it still ends with an encoder
    assert (tmp_path / "run" / "encoder.pt").exists()


def test_a_check_between_epochs_is_sized_to_the_time_it_may_take() -> None:
    """A labelled run's check with kNN embeds thousands of images; in a budgeted run it is
    predicted from the timed cost of one image, sampled, and dropped to health only (or skipped)
    when it would not fit in its share of the training phase."""
    from types import SimpleNamespace

    import torch

    from model.training.feed import EvalSet
    from model.training.monitor import KNN_SAMPLE, check_images
    from model.training.state import TrainState
    from model.training.train import _eval_due
    from tests.conftest import tiny_config

    cfg = tiny_config(knn_every=1, health_eval=100, health_sample=100)
    evalset = EvalSet(torch.zeros(800, 3, 8, 8, dtype=torch.uint8), torch.zeros(800, dtype=torch.long),
                      torch.zeros(5000, 3, 8, 8, dtype=torch.uint8), torch.zeros(5000, dtype=torch.long))  # fmt: skip
    with_knn = check_images(cfg, evalset, knn=True, sample=True)
    assert with_knn == 3 * 100 + KNN_SAMPLE[0] + KNN_SAMPLE[1]
    assert check_images(cfg, evalset, knn=False, sample=True) == 300
    state = TrainState(torch.nn.Linear(1, 1), None, torch.Generator())  # type: ignore[arg-type]
    state.phase_seconds = 50.0

    def run(image_seconds: float, budget: float, left: float) -> object:
        timeline = SimpleNamespace(budgeted=True, training_seconds=lambda after: left)
        return SimpleNamespace(cfg=cfg, timeline=timeline, image_seconds=image_seconds,
                               plan=SimpleNamespace(budget_seconds=budget), after=0.0)  # fmt: skip

    # 10 % of a 1,000-s phase is 100 s: kNN on the sample (2,800 images x 0.01 s) fits
    assert _eval_due(state, run(0.01, 1000, 900), evalset, 0, False, False) == (True, True)
    # at 0.1 s an image it does not (280 s), health alone (30 s) does
    assert _eval_due(state, run(0.1, 1000, 900), evalset, 0, False, False) == (True, False)
    # at 1 s an image not even health (300 s): no check
    assert _eval_due(state, run(1.0, 1000, 900), evalset, 0, False, False) == (False, False)
    # the last check really paid 0.1 s an image (a busy machine): that is what the next one expects
    state.last_check_image_seconds = 0.1
    assert _eval_due(state, run(0.01, 1000, 900), evalset, 0, False, False) == (True, False)
    state.last_check_image_seconds = 0.0
    # checks already took more than their share of the time so far: wait
    state.eval_seconds = 6.0
    assert _eval_due(state, run(0.01, 1000, 900), evalset, 0, False, False) == (False, False)
    # the last check: whatever the time left holds
    assert _eval_due(state, run(0.1, 1000, 40), evalset, 0, True, False) == (True, False)
    assert _eval_due(state, run(0.1, 1000, 10), evalset, 0, True, False) == (False, False)


def test_a_sampled_knn_check_uses_an_even_sample_of_bank_and_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from model.training import monitor
    from model.training.feed import EvalSet
    from model.training.simclr import SimCLRModel
    from tests.conftest import tiny_config

    monkeypatch.setattr(monitor, "KNN_SAMPLE", (30, 10))
    cfg = tiny_config(knn_every=1, health_eval=8, health_sample=8, knn_k=5)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (100, 3, 16, 16), dtype=torch.uint8, generator=gen)
    labels = torch.arange(100) % 4
    evalset = EvalSet(images[:40], labels[:40], images[40:], labels[40:])
    model = SimCLRModel(cfg.encoder)
    row = monitor.evaluate_epoch(model, cfg, evalset, torch.device("cpu"), 0, knn=True, sample=True)
    assert row["knn_sample"] == [30, 10] and 0 <= row["knn_top1"] <= 1
    full = monitor.evaluate_epoch(model, cfg, evalset, torch.device("cpu"), 0, knn=True)
    assert "knn_sample" not in full and "knn_top1" in full
    assert "knn_top1" not in monitor.evaluate_epoch(model, cfg, evalset, torch.device("cpu"), 0, knn=False)
