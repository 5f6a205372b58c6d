"""Fixtures of the training tests: a fake clock that makes budgeted runs deterministic."""

from __future__ import annotations

import itertools

import pytest

from model.training import budget as budget_module
from model.training import timeline as timeline_module
from model.training import train as train_module
from tests.conftest import tiny_config


def step_clock(seconds_per_step: float):  # type: ignore[no-untyped-def]
    """A fake `model.training.train.clock`: a step is timed by two calls, and every step takes `seconds_per_step`."""
    calls = itertools.count()
    return lambda: ((next(calls) + 1) // 2) * seconds_per_step


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every view size 'takes' 1/16 s a step, in the trial and in the run: a 0.1-minute budget
    plans int(0.97 * 6 * 16) = 93 steps, and the run keeps to them. The command's own clock stands
    still and nothing is set aside for the end, so that all 6 s of the budget are the steps'."""
    monkeypatch.setattr(budget_module, "time_steps", lambda sizes, run, repeats=2: dict.fromkeys(sizes, 0.0625))
    monkeypatch.setattr(train_module, "clock", step_clock(0.0625))
    monkeypatch.setattr(train_module, "check_clock", lambda: 0.0)  # the checks between epochs take no time
    monkeypatch.setattr(timeline_module.Timeline, "elapsed", lambda self: 0.0)
    monkeypatch.setattr(timeline_module, "SAVE_SECONDS", 0.0)
    monkeypatch.setattr(timeline_module, "MARGIN_SHARE", 0.0)


def budgeted(**train: object):  # type: ignore[no-untyped-def]
    return tiny_config(**{"minutes": 0.1, "knn_every": 0, "log_every": 10, **train})
