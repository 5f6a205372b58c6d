"""Search first, adapt afterwards: `latent-search demo` on a small photo folder serves the shipped
network at once, adapts behind it with a one-minute budget, and swaps the index to the run's
encoder, with searches answered (and /ready true) throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.demo import stop_group
from tests.conftest import free_port, pattern_image, pattern_png
from tests.e2e.conftest import wait_ready

pytestmark = pytest.mark.slow
FINAL = ("adapted", "kept-shipped", "failed")


def photo_folder(root: Path, n: int = 60) -> Path:
    """`n` 224-px JPEG 'photos' of 3 kinds (patterns upscaled, with noise): a photo-sized folder."""
    rng = np.random.default_rng(7)
    for i in range(n):
        small = pattern_image(i % 3, rng)
        big = np.asarray(Image.fromarray(small).resize((224, 224), Image.Resampling.BILINEAR), dtype=np.int16)
        noisy = np.clip(big + rng.integers(-12, 13, big.shape), 0, 255).astype(np.uint8)
        (root / f"kind{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy).save(root / f"kind{i % 3}" / f"{i:03d}.jpg", quality=90)
    return root


def test_demo_searches_at_once_and_swaps_to_the_runs_encoder_with_searches_throughout(tmp_path: Path) -> None:
    data = photo_folder(tmp_path / "photos")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LATENT_SEARCH_API_KEY": "k", "LATENT_SEARCH_DATA": ""}
    cmd = [sys.executable, "-m", "app.cli", "demo", "--data", str(data), "--workdir", str(tmp_path / "work"),
           "--minutes", "1", "--port", str(port)]  # fmt: skip
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(base, timeout=180)
        first = httpx.get(f"{base}/encoder", timeout=10).json()
        # The shipped network serves from the start, at the first index's side; the run is under way.
        assert first["name"] == "efficientnet_lite0-160" and first["image_size"] == 160, first
        assert first["adaptation"]["state"] in ("waiting", "training"), first
        version = httpx.get(f"{base}/index", timeout=10).json()["version"]
        stop, codes, ready = threading.Event(), [], []

        def search() -> None:
            with httpx.Client() as client:
                n = 0
                while not stop.is_set():
                    files = {"image": ("q.png", pattern_png(n), "image/png")}
                    codes.append(client.post(f"{base}/search", files=files, params={"k": 5}, timeout=60).status_code)
                    ready.append(client.get(f"{base}/ready", timeout=60).status_code)
                    n += 1
                    time.sleep(0.2)

        searcher = threading.Thread(target=search, daemon=True)
        searcher.start()
        deadline, info = time.monotonic() + 300, first
        while time.monotonic() < deadline and info["adaptation"]["state"] not in FINAL:
            time.sleep(2)
            info = httpx.get(f"{base}/encoder", timeout=30).json()
        stop.set()
        searcher.join(60)
        adaptation = info["adaptation"]
        # 60 images are too few to judge: the run keeps the network as it ships, at the side it was
        # judged at (224 px), and the index is rebuilt with it and swapped in.
        assert adaptation["state"] == "kept-shipped", (adaptation, (tmp_path / "demo.log").read_text()[-3000:])
        assert "too few to judge" in adaptation["message"]
        assert info["image_size"] == 224 and "runs/pretrained-lite0/encoder." in info["path"]  # .pt, or its .onnx
        assert info["choice"]["too_small"] is True
        assert httpx.get(f"{base}/index", timeout=10).json()["version"] != version
        assert codes and set(codes) == {200}, sorted(set(codes))
        assert ready and set(ready) == {200}
    finally:
        stop_group(proc)
        log.close()
    # Run again: the run has chosen, the index was built with its encoder: nothing is redone.
    again = subprocess.run([*cmd[:-2], "--no-serve"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "has chosen its encoder" in again.stdout and "reusing index" in again.stdout
