"""Folder sync for real: the CLI killed half-way and run again, and POST /index/sync on a served
index, both checked against the folder's own contents."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from index.build import build_index
from index.store import load
from model.embedding.runtime import load_runtime
from tests.conftest import free_port, pattern_png
from tests.e2e.conftest import wait_ready
from tests.index.test_sync import folder_contents, index_contents

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "app.cli"]


def indexed_copy(encoder: Path, folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    shutil.copytree(folder, photos)
    root = tmp_path / "idx"
    build_index(load_runtime(encoder), photos, root, progress=False)
    return photos, root


def test_a_sync_killed_half_way_and_run_again_ends_correct(
    tiny_encoder: Path, image_folder: Path, tmp_path: Path
) -> None:
    photos, root = indexed_copy(tiny_encoder, image_folder, tmp_path)
    before = load(root).count
    (photos / "new").mkdir()
    for i in range(300):
        (photos / "new" / f"{i:03d}.png").write_bytes(pattern_png(2000 + i))
    (photos / "train" / "checker" / "000.jpg").unlink()
    cmd = [*CLI, "index", "sync", "--encoder", str(tiny_encoder), "--data", str(photos), "--index", str(root)]
    proc = subprocess.Popen([*cmd, "--chunk", "1"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("added 5"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    half = load(root, writable=True).count
    assert before + 5 <= half < before + 300  # killed with part of the adds journalled

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    index = load(root, writable=True)
    assert index_contents(index) == folder_contents(photos)
    assert index.count == len(folder_contents(photos))  # nothing added twice


def serve(encoder: Path, index: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [*CLI, "serve", "--encoder", str(encoder), "--index", str(index), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, timeout=120)
    return proc, base


def finished(base: str, job: dict[str, object]) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info: dict[str, object] = httpx.get(f"{base}/index/sync/{job['id']}", timeout=10).json()
        if info["state"] not in ("queued", "running"):
            return info
        time.sleep(0.1)
    raise AssertionError(f"sync job {job['id']} did not finish in 120 s")


def test_the_service_syncs_a_folder_as_a_job(tiny_encoder: Path, image_folder: Path, tmp_path: Path) -> None:
    photos, root = indexed_copy(tiny_encoder, image_folder, tmp_path)
    new = pattern_png(3000)
    (photos / "train" / "checker" / "new.png").write_bytes(new)
    (photos / "test" / "checker" / "000.jpg").unlink()
    (photos / "train" / "stripes_h" / "003.jpg").rename(photos / "renamed.jpg")
    proc, base = serve(tiny_encoder, root)
    try:
        renamed_id = next(r.id for r in load(root).catalog.rows() if r.uri == "train/stripes_h/003.jpg")
        job = httpx.post(f"{base}/index/sync", json={"data": str(photos)}, timeout=10)
        assert job.status_code == 202
        info = finished(base, job.json())
        assert info["state"] == "succeeded", info
        assert info["summary"] == info["summary"] | {"added": 1, "removed": 1, "moved": 1}  # type: ignore[operator]
        hits = httpx.post(f"{base}/search", files={"image": ("q.png", new)}, params={"k": 1}, timeout=30).json()
        assert hits["neighbours"][0]["uri"] == "train/checker/new.png" and hits["neighbours"][0]["score"] > 0.999
        assert httpx.get(f"{base}/images/{renamed_id}", timeout=10).status_code == 200
        count = httpx.get(f"{base}/index", timeout=10).json()["count"]

        for path in sorted(p for p in photos.rglob("*") if p.is_file())[::2]:  # half the folder gone
            path.unlink()
        refused = finished(base, httpx.post(f"{base}/index/sync", json={"data": str(photos)}, timeout=10).json())
        assert refused["state"] == "refused" and "nothing was changed" in str(refused["error"])
        assert httpx.get(f"{base}/index", timeout=10).json()["count"] == count
        missing = httpx.post(f"{base}/index/sync", json={"data": str(tmp_path / "unmounted")}, timeout=10)
        assert missing.status_code == 404 and "not a folder" in missing.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(20)
    index = load(root, writable=True)  # what the server journalled, replayed
    assert index.count == count


def test_a_duplicate_decision_survives_a_sync_that_renames_its_files(
    tiny_encoder: Path, image_folder: Path, tmp_path: Path
) -> None:
    photos, root = indexed_copy(tiny_encoder, image_folder, tmp_path)
    proc, base = serve(tiny_encoder, root)
    try:
        groups = httpx.get(f"{base}/duplicates", params={"threshold": 0.9995}, timeout=60).json()["groups"]
        members = groups[0]["images"]
        ids = [m["id"] for m in members]
        r = httpx.post(f"{base}/duplicates/reviews", json={"ids": ids, "decision": "keep_all"}, timeout=10)
        assert r.status_code == 201
        moved = photos / members[0]["uri"]
        moved.rename(photos / f"renamed-{moved.name}")  # a file of the group moves
        info = finished(base, httpx.post(f"{base}/index/sync", json={"data": str(photos)}, timeout=10).json())
        assert info["state"] == "succeeded" and info["summary"]["moved"] == 1  # type: ignore[index]
        after = httpx.get(f"{base}/duplicates", params={"threshold": 0.9995}, timeout=60).json()["groups"]
        same = next(g for g in after if ids[0] in [m["id"] for m in g["images"]])
        assert same["status"] == "reviewed" and sorted(same["review"]["ids"]) == sorted(ids)
        assert f"renamed-{moved.name}" in [m["uri"] for m in same["images"]]
    finally:
        proc.terminate()
        proc.wait(20)
