"""Search first, adapt afterwards: the service answers searches with the network it was started
with (the shipped one) while `latent-search train` adapts an encoder to the collection in another
process; when that run ends, the index is rebuilt with the encoder the run chose and swapped in
atomically (app.jobs), searches answered throughout.

The run is a separate process (the CLI, not an import: the service never loads training code),
started once the service is ready and watched from a thread. Its progress is read from the run
folder (config.json's plan, metrics.jsonl) and its decision from choice.json beside encoder.pt.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from model.embedding.runtime import load_runtime

if TYPE_CHECKING:
    from app.jobs import Rebuilder
    from app.service import SearchService

LOG = logging.getLogger(__name__)

State = Literal["waiting", "training", "rebuilding", "adapted", "kept-shipped", "failed"]
TRAINED_NAMES = ("adapted", "trained")  # what model.training.release calls a network the run made
POLL_S = 1.0


@dataclass
class AdaptationPlan:
    """What to adapt to and where: the collection, the run folder, the budget (None: the preset's)."""

    data: str
    run_dir: Path
    minutes: float | None = None


def read_choice(run_dir: Path) -> dict[str, Any] | None:
    """The run's label-free decision (choice.json), or None where it made none."""
    path = run_dir / "choice.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def run_progress(run_dir: Path) -> tuple[int, int]:
    """(steps done, steps planned) of a run, from its files: (0, 0) before its plan exists."""
    try:
        total = int(json.loads((run_dir / "config.json").read_text())["plan"]["total_steps"])
    except (OSError, ValueError, KeyError):
        return 0, 0
    step = 0
    try:
        with (run_dir / "metrics.jsonl").open() as fh:
            for line in fh:
                row = json.loads(line)
                if row.get("kind") == "step":
                    step = int(row["step"])
                elif row.get("kind") == "replan":
                    total = int(row["new_total"])
    except (OSError, ValueError):
        pass
    return step, total


def keeps_served(run_dir: Path, served_size: int) -> bool:
    """Whether a finished run kept the shipped network at the side the served one embeds at: then
    it computes what serves already, and nothing needs re-indexing."""
    choice = read_choice(run_dir) or {}
    if choice.get("chosen", TRAINED_NAMES[0]) in TRAINED_NAMES:
        return False
    # The kept network's own side (a run from scratch at 32 px may keep its rival at 160).
    return load_runtime(run_dir / "encoder.pt").image_size == served_size


def take_served_files(served_dir: Path, run_dir: Path) -> None:
    """Make the run's encoder.pt (and .onnx) the very files that serve, so that the index built with
    them matches the run's encoder (a later `demo`, or a container given the run folder, reuses it).
    The run's decision stays in its choice.json."""
    for name in ("encoder.pt", "encoder.onnx"):
        source = served_dir / name
        if source.exists():
            staged = run_dir / f".{name}.tmp"
            shutil.copyfile(source, staged)
            staged.replace(run_dir / name)


class Adaptation:
    """One background adaptation of the served collection, and its state for the page and API."""

    def __init__(self, service: SearchService, rebuilder: Rebuilder, plan: AdaptationPlan) -> None:
        self.service, self.rebuilder, self.plan = service, rebuilder, plan
        self.state: State = "waiting"
        self.message = "waiting for the service to be ready"
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.rebuild_id: str | None = None
        self._stop = threading.Event()
        self.log_path = plan.run_dir.parent / f"{plan.run_dir.name}.log"

    def start(self) -> None:
        threading.Thread(target=self._run, name="adaptation", daemon=True).start()

    def stop(self) -> None:
        """Shutdown: end the training process (a resumed `demo` continues it from its checkpoint)."""
        self._stop.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def command(self) -> list[str]:
        run = self.plan.run_dir
        cmd = [sys.executable, "-m", "app.cli", "train", "--data", self.plan.data, "--out", str(run)]
        if (run / "checkpoint.pt").exists():
            cmd.append("--resume")  # an earlier service stopped it: go on where it was
        elif self.plan.minutes is not None:
            cmd += ["--minutes", f"{self.plan.minutes:g}"]
        return cmd

    def _run(self) -> None:
        try:
            while not self.service.ready and not self._stop.is_set():
                time.sleep(POLL_S)
            if self._stop.is_set():
                return
            self._train()
            if not self._stop.is_set():
                self._adopt()
        except Exception as exc:  # the service goes on with the network it has
            LOG.exception("background adaptation failed")
            self._finish("failed", f"{type(exc).__name__}: {exc}; still serving the network it started with")

    def _train(self) -> None:
        self.plan.run_dir.parent.mkdir(parents=True, exist_ok=True)
        self.state, self.started_at = "training", time.time()
        self.message = f"adapting an encoder to the collection (log: {self.log_path})"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
            code = self.process.wait()
        if code != 0 and not self._stop.is_set():
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"`latent-search train` exited with {code}: {' / '.join(tail)}")

    def _adopt(self) -> None:
        """Swap to the run's encoder when it differs from the served one in what it computes."""
        encoder = self.plan.run_dir / "encoder.pt"
        choice = read_choice(self.plan.run_dir) or {}
        said = str(choice.get("message", ""))
        trained = choice.get("chosen", TRAINED_NAMES[0]) in TRAINED_NAMES
        served = self.service.require().encoder
        if keeps_served(self.plan.run_dir, served.image_size):
            take_served_files(Path(served.path).parent, self.plan.run_dir)
            self._finish("kept-shipped", f"the network as it ships stays: {said}")
            return
        self.state = "rebuilding"
        self.message = ("re-indexing with the adapted network" if trained
                        else "re-indexing with the network as it ships, at the size it was judged at")  # fmt: skip
        job = self.rebuilder.start(encoder_path=str(encoder))
        self.rebuild_id = job.id
        while job.state in ("queued", "running") and not self._stop.is_set():
            time.sleep(POLL_S)
        if job.state != "succeeded":
            raise RuntimeError(f"the rebuild with {encoder} failed: {job.error}")
        if trained:
            self._finish("adapted", f"now serving the adapted network: {said}")
        else:
            self._finish("kept-shipped", f"the network as it ships stays: {said}")

    def _finish(self, state: State, message: str) -> None:
        self.state, self.message, self.finished_at = state, message, time.time()
        LOG.info("adaptation %s: %s", state, message)

    def info(self) -> dict[str, Any]:
        """What the page and GET /encoder show."""
        out: dict[str, Any] = {"state": self.state, "message": self.message, "run_dir": str(self.plan.run_dir)}
        if self.state == "training":
            step, total = run_progress(self.plan.run_dir)
            out.update(step=step, total_steps=total)
            if self.plan.minutes is not None and self.started_at is not None:
                out["seconds_left"] = max(0.0, self.plan.minutes * 60 - (time.time() - self.started_at))
        if self.state == "rebuilding" and self.rebuild_id is not None:
            job = self.rebuilder.jobs[self.rebuild_id]
            out.update(step=job.done, total_steps=job.total)
        out["started_at"] = self.started_at
        out["finished_at"] = self.finished_at
        return out
