"""Search first, adapt afterwards (app.adaptation): progress read from a run's files, and the
swap to the run's encoder through the service's own rebuild, with a stand-in for the training
process (the real one runs in tests/e2e/test_search_first.py)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.adaptation import Adaptation, read_choice, run_progress
from app.main import create_app
from model.embedding.backbones import build_backbone
from model.embedding.encoder_file import save_encoder
from model.embedding.spec import EncoderConfig
from tests.app.conftest import make_settings, wait_ready
from tests.conftest import pattern_png


def test_progress_and_choice_are_read_from_the_run_folder(tmp_path: Path) -> None:
    assert run_progress(tmp_path) == (0, 0) and read_choice(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"plan": {"total_steps": 73}}))
    assert run_progress(tmp_path) == (0, 73)
    rows = [{"kind": "step", "step": 20}, {"kind": "replan", "step": 21, "new_total": 69}, {"kind": "step", "step": 40}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_progress(tmp_path) == (40, 69)
    (tmp_path / "choice.json").write_text("{not json")
    assert read_choice(tmp_path) is None
    (tmp_path / "choice.json").write_text(json.dumps({"chosen": "adapted", "message": "kept adapted: ..."}))
    assert read_choice(tmp_path) == {"chosen": "adapted", "message": "kept adapted: ..."}


def fake_run(run_dir: Path, chosen: str, image_size: int, seed: int) -> list[str]:
    """A stand-in for `latent-search train`: after a moment, writes what a finished run leaves."""
    cfg = EncoderConfig(arch="small_cnn", width=4, image_size=image_size)
    torch.manual_seed(seed)
    backbone, dim = build_backbone(cfg)
    staged = run_dir.parent / "staged.pt"
    save_encoder(staged, backbone.eval(), cfg, dim)
    script = f"""
import json, pathlib, shutil, time
run = pathlib.Path({str(run_dir)!r}); run.mkdir(parents=True, exist_ok=True)
record = {{"plan": {{"total_steps": 10}}, "encoder": {{"image_size": {image_size}}}}}
(run / "config.json").write_text(json.dumps(record))
time.sleep(1.0)
(run / "metrics.jsonl").write_text(json.dumps({{"kind": "step", "step": 10}}) + "\\n")
(run / "choice.json").write_text(json.dumps({{"chosen": {chosen!r}, "message": "kept {chosen}: (fake judge)"}}))
shutil.copy({str(staged)!r}, run / "encoder.pt")
"""
    return [sys.executable, "-c", script]


def adapt(client: TestClient, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get("/encoder").json()
        if info["adaptation"]["state"] in ("adapted", "kept-shipped", "failed"):
            return info  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"adaptation not finished: {client.get('/encoder').json()}")


@pytest.mark.parametrize(
    ("chosen", "size", "state", "swapped"),
    [
        ("trained", 32, "adapted", True),  # the run's own network: re-index with it
        ("efficientnet_lite0", 32, "kept-shipped", False),  # the shipped network, as served: nothing to do
        ("efficientnet_lite0", 48, "kept-shipped", True),  # ... judged at another side: re-index at that side
    ],
)
def test_the_service_swaps_to_what_the_run_chose(
    monkeypatch: pytest.MonkeyPatch, tiny_encoder: Path, tiny_index: Path, tmp_path: Path,
    chosen: str, size: int, state: str, swapped: bool,
) -> None:  # fmt: skip
    index = tmp_path / "idx"
    shutil.copytree(tiny_index, index)
    run_dir = tmp_path / "runs" / "cpu-small"
    command = fake_run(run_dir, chosen, size, seed=1)
    monkeypatch.setattr(Adaptation, "command", lambda self: command)
    settings = make_settings(tiny_encoder, index, api_key="k", adapt_data="photos", adapt_run=run_dir,
                             adapt_minutes=1.0, rebuild_duty_cycle=1.0)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        before = client.get("/encoder").json()
        assert before["name"] == tiny_encoder.parent.name and before["image_size"] == 32
        version = client.get("/index").json()["version"]
        info = adapt(client)
        assert info["adaptation"]["state"] == state, info
        assert f"kept {chosen}" in str(info["adaptation"]["message"])
        assert (client.get("/index").json()["version"] != version) is swapped
        assert (info["sha256"] != before["sha256"]) is swapped
        if not swapped:  # the run's encoder is now the very file that serves (its index matches it)
            assert (run_dir / "encoder.pt").read_bytes() == tiny_encoder.read_bytes()
        if swapped:
            assert info["path"] == str(run_dir / "encoder.pt") and info["image_size"] == size
            assert info["choice"]["chosen"] == chosen and info["chosen_at"]
        found = client.post("/search", files={"image": ("q.png", pattern_png(3), "image/png")}, params={"k": 5})
        assert found.status_code == 200 and len(found.json()["neighbours"]) == 5  # searched by what serves now
        assert client.get("/ready").status_code == 200


def test_a_failed_run_leaves_the_service_as_it_was(
    monkeypatch: pytest.MonkeyPatch, tiny_encoder: Path, tiny_index: Path, tmp_path: Path
) -> None:
    index = tmp_path / "idx"
    shutil.copytree(tiny_index, index)
    monkeypatch.setattr(Adaptation, "command", lambda self: [sys.executable, "-c", "raise SystemExit('no images')"])
    settings = make_settings(tiny_encoder, index, adapt_data="photos", adapt_run=tmp_path / "runs" / "x")
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        version = client.get("/index").json()["version"]
        info = adapt(client)
        assert info["adaptation"]["state"] == "failed" and "no images" in str(info["adaptation"]["message"])
        assert client.get("/index").json()["version"] == version and info["path"] == str(tiny_encoder)
