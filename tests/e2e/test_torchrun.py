"""The launch the README documents: `torchrun --nproc-per-node N -m app.cli ...` on CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, "-m", "app.cli", *args], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def train_args(data: str, out: Path, epochs: int) -> list[str]:
    """A tiny run: batch 8 per process, an 8-wide CNN, a log row every step."""
    return [
        "--data",
        data,
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        *["--batch-size", "8", "--set", "encoder.width=8", "--set", "train.log_every=1"],
    ]


def test_torchrun_trains_resumes_and_builds_an_index(image_folder: Path, tmp_path: Path) -> None:
    run, data = tmp_path / "run", str(image_folder)
    common = train_args(data, run, epochs=2)
    first = torchrun("train", *common, "--stop-after-steps", "1")
    assert first.stdout.count("stopped at step 1/4") == 1  # rank 0 alone reports
    second = torchrun("train", "--data", data, "--out", str(run), "--resume")
    assert second.stdout.count("finished in") == 1
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "step"] == [1, 2, 3, 4]
    built = torchrun(
        "index", "build", "--encoder", str(run / "encoder.pt"), "--data", data, "--out", str(tmp_path / "idx")
    )
    assert built.stdout.count("published") == 1 and "54 images" in built.stdout


def test_two_nodes_meet_through_rendezvous(image_folder: Path, tmp_path: Path) -> None:
    """Multi-node training as documented: two torchrun launchers (nodes) meet at a c10d endpoint."""
    endpoint = f"127.0.0.1:{free_port()}"
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(node),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "latent-search-test",
                "-m",
                "app.cli",
                "train",
                *train_args(str(image_folder), run, epochs=1),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for node in (0, 1)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    assert sum(out.count("finished in") for out, _ in outputs) == 1  # one global rank 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["batch_size"] == 8
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "step"] == [1, 2]  # 36 images / (8 x 2 nodes)
