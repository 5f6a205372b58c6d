"""The API image, built and run for real: mounted encoder + index, a real search, non-root, healthy.

Skipped (with the reason) where no Docker engine answers; `docker/build-local.sh` (as root)
starts Debian's engine, makes a local base image and builds the image here.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import encode, pattern_image
from tests.e2e.conftest import free_port, wait_ready

IMAGE = "latent-search/api:local"
ROOT = Path(__file__).resolve().parents[2]


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (subprocess.TimeoutExpired, OSError):  # a hung or broken client means no usable engine
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not engine_answers(), reason="no Docker engine answers here (docker/build-local.sh starts one)"),
]


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def test_api_image_serves_a_mounted_index(tiny_encoder: Path, tiny_index: Path, tmp_path: Path) -> None:
    if not docker("images", "-q", IMAGE):  # build (or reuse) the image
        subprocess.run([str(ROOT / "docker" / "build-local.sh")], check=True, timeout=1800)
    # pytest's temporary folders are 0700: give the container's non-root user its own copies.
    encoder = tmp_path / "encoder"
    encoder.mkdir(mode=0o755)
    shutil.copy2(tiny_encoder, encoder / "encoder.pt")
    (encoder / "encoder.pt").chmod(0o644)
    index = tmp_path / "index"
    shutil.copytree(tiny_index, index)
    for path in [index, *index.rglob("*")]:  # it writes its journal and working catalog here
        path.chmod(0o777 if path.is_dir() else 0o666)
    port = free_port()
    name = f"latent-search-test-{port}"
    try:
        run_and_check(name, encoder, index, port)
    finally:
        docker("rm", "-f", name, check=False)


def run_and_check(name: str, encoder: Path, index: Path, port: int) -> None:
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-v",
        f"{encoder}:/data/encoder:ro",
        "-v",
        f"{index}:/data/index",
        "-e",
        "LATENT_SEARCH_TORCH_THREADS=1",
        "-e",
        "UVICORN_HOST=127.0.0.1",  # host network: listen on loopback only, on a free port
        "-e",
        f"UVICORN_PORT={port}",
        IMAGE,  # the image's own CMD and HEALTHCHECK
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ncontainer log:\n{docker('logs', name, check=False)}") from exc
    query = encode(pattern_image(0, np.random.default_rng(3)), "PNG")
    r = httpx.post(f"{base}/search", files={"image": ("q.png", query, "image/png")}, params={"k": 5}, timeout=30)
    assert r.status_code == 200 and len(r.json()["neighbours"]) == 5
    assert docker("exec", name, "id", "-u") != "0"
    deadline = time.monotonic() + 90
    health = ""
    while time.monotonic() < deadline:
        health = docker("inspect", "--format", "{{.State.Health.Status}}", name)
        if health == "healthy":
            break
        time.sleep(2)
    assert health == "healthy"
