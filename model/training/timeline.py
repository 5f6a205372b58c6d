"""The command's wall clock: `--minutes M` is the time from the command's start to its exit.

A budgeted run's phases: decoding the collection, the speed trials, measuring the shipped network
for the encoder choice (model.training.adapt.Judging), the training phase (steps, the checks
between epochs, checkpoints), then the other half of the choice, saving and the ONNX export. All
but the training phase are measured or predicted from measurements before training starts; the
training phase gets what is left (model.training.budget plans its steps, model.training.pace keeps
it on time), and a budget too short for any training is said at once, with the budget that would do.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from model.common.processes import process_age

MIN_TRAINING_SECONDS = 60.0  # a training phase shorter than this is not worth its trials
SAVE_SECONDS = 3.0  # saving encoder.pt and candidates, two ONNX exports (0.8 s each measured here)
MARGIN_SHARE = 0.02  # of the budget, kept free for what timing cannot see (the interpreter's exit)
EVAL_SHARE = 0.1  # of the training phase, at most, for the checks between epochs


@dataclass(frozen=True)
class Timeline:
    """`minutes` of wall time from `started` (a perf_counter() reading; 0 minutes: no budget)."""

    minutes: float
    started: float

    @classmethod
    def since_process_start(cls, minutes: float) -> Timeline:
        """The budget counted from this process's start (interpreter and imports included)."""
        return cls(minutes, time.perf_counter() - process_age())

    @property
    def budgeted(self) -> bool:
        return self.minutes > 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        """Seconds until the budget's end (infinite without a budget)."""
        return self.minutes * 60 - self.elapsed() if self.budgeted else math.inf

    def margin(self) -> float:
        return MARGIN_SHARE * self.minutes * 60

    def training_seconds(self, after: float) -> float:
        """Wall seconds the training phase may take now, leaving `after` seconds for the end."""
        return self.left() - after - SAVE_SECONDS - self.margin()

    def too_short(self, after: float) -> str | None:
        """What to tell the user when the budget leaves less than MIN_TRAINING_SECONDS to train."""
        if not self.budgeted or self.training_seconds(after) >= MIN_TRAINING_SECONDS:
            return None
        spent = self.elapsed()
        need = (spent + after + SAVE_SECONDS + MIN_TRAINING_SECONDS) / (60 * (1 - MARGIN_SHARE))
        return (
            f"--minutes {self.minutes:g} is too short to train: {spent:.0f} s went to reading the collection and "
            f"measuring, and {after + SAVE_SECONDS:.0f} s are needed at the end (choosing the encoder, saving), "
            f"which leaves {max(0.0, self.training_seconds(after)):.0f} s for training; use --minutes "
            f"{math.ceil(need)} or more (the run goes on with a few steps and may end late)"
        )


def clock_text(seconds: float) -> str:
    """m:ss for a progress display."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
