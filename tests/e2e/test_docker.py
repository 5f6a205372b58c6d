"""The API image, built and run for real: the photo encoder a photo collection gets (the shipped
EfficientNet-Lite0 at 224 px, mounted as its ONNX export: the image has no torch) and an index
built with it, a real search, duplicate groups and the map, non-root, healthy, at most 400 MB.

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

from index.build import build_index
from model.embedding.onnx_export import export_onnx
from model.embedding.pretrained import export_as_is
from model.embedding.runtime import load_runtime
from tests.conftest import encode, pattern_image
from tests.e2e.conftest import free_port, wait_ready

IMAGE = "latent-search/api:local"
MAX_IMAGE_BYTES = 400_000_000  # issue 34: the API image stays lean
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


def test_api_image_serves_a_mounted_index(image_folder: Path, tmp_path: Path) -> None:
    # Build from this tree every time (unchanged layers come from Docker's cache).
    subprocess.run([str(ROOT / "docker" / "build-local.sh")], check=True, timeout=1800)
    probe = "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('onnxruntime') is not None)"
    assert docker("run", "--rm", "--network", "none", IMAGE, "python3", "-c", probe) == "None True"
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE))
    assert size <= MAX_IMAGE_BYTES, f"the API image is {size / 1e6:.0f} MB, over {MAX_IMAGE_BYTES / 1e6:.0f} MB"
    # pytest's temporary folders are 0700: give the container's non-root user its own copies.
    encoder = tmp_path / "encoder"
    encoder.mkdir(mode=0o755)
    export_as_is("efficientnet_lite0", encoder / "encoder.pt", 224)
    export_onnx(encoder / "encoder.pt")
    for file in encoder.iterdir():
        file.chmod(0o644)
    index = tmp_path / "index"
    build_index(load_runtime(encoder / "encoder.pt"), image_folder, index, progress=False)
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
        "LATENT_SEARCH_ENCODER_THREADS=1",
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
    info = httpx.get(f"{base}/index", timeout=10).json()
    assert info["encoder_runtime"] == "onnx" and info["encoder_arch"] == "efficientnet_lite0"
    # The collection features run without SciPy or scikit-learn; the measured threshold needs the encoder.
    duplicates = httpx.get(f"{base}/duplicates", timeout=60)
    assert duplicates.status_code == 200 and duplicates.json()["calibration"] is not None
    assert httpx.get(f"{base}/map", timeout=10).json()["total_points"] == info["count"]
    assert docker("exec", name, "id", "-u") != "0"
    deadline = time.monotonic() + 90
    health = ""
    while time.monotonic() < deadline:
        health = docker("inspect", "--format", "{{.State.Health.Status}}", name)
        if health == "healthy":
            break
        time.sleep(2)
    assert health == "healthy"
