"""Memory you can plan for, on a real server process (/proc, Linux) with the photo encoder
(EfficientNet-Lite0 through ONNX Runtime): bounded under load, and given back when idle (the
encoder is unloaded after LATENT_SEARCH_ENCODER_IDLE_UNLOAD_S; the next upload loads it again)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from index.build import build_index
from model.embedding.onnx_export import export_onnx
from model.embedding.pretrained import export_as_is
from model.embedding.runtime import load_runtime
from tests.conftest import free_port
from tests.e2e.conftest import wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")]


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_an_idle_server_unloads_its_encoder_and_memory_falls(image_folder: Path, tmp_path: Path) -> None:
    encoder = export_as_is("efficientnet_lite0", tmp_path / "enc" / "encoder.pt", 224)
    export_onnx(encoder)
    build_index(load_runtime(encoder), image_folder, tmp_path / "idx", progress=False)
    port = free_port()
    env = {**os.environ, "LATENT_SEARCH_ENCODER_IDLE_UNLOAD_S": "3"}
    cmd = [sys.executable, "-m", "app.cli", "serve", "--encoder", str(encoder), "--index", str(tmp_path / "idx")]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=120)

        def search(seed: int) -> int:
            files = {"image": ("q.jpg", photo(seed), "image/jpeg")}
            return httpx.post(f"{base}/search", files=files, timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:  # batches of several queries: the runtime's buffers grow
            assert set(pool.map(search, range(32))) == {200}
        busy = resident_mb(proc.pid)
        # Runs of at most LATENT_SEARCH_ENCODER_RUN_PIXELS bound ONNX Runtime's buffers: 450 MB
        # here after concurrency 16, against 1.6 GB when a micro-batch of 128 views ran at once.
        assert busy < 1000, f"resident {busy:.0f} MB under load"
        assert httpx.get(f"{base}/index", timeout=10).json()["encoder_loaded"]
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/index", timeout=10).json()["encoder_loaded"] and time.monotonic() < deadline:
            time.sleep(0.5)
        idle = resident_mb(proc.pid)
        assert not httpx.get(f"{base}/index", timeout=10).json()["encoder_loaded"]
        assert busy - idle >= 20, f"resident {busy:.0f} MB busy, {idle:.0f} MB after the unload"
        assert search(99) == 200  # loaded again on demand
        assert httpx.get(f"{base}/index", timeout=10).json()["encoder_loaded"]
    finally:
        proc.terminate()
        proc.wait(20)
