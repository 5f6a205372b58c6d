"""The service on ONNX Runtime: it serves an index built with the torch encoder, from the
encoder's export, in a process where torch cannot be imported (as in the API image)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from index.store import load
from model.embedding.embed import load_encoder
from model.embedding.onnx_export import export_onnx
from model.embedding.query_views import search_views
from model.embedding.runtime import embed_queries

SERVE_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from fastapi.testclient import TestClient
from app.config import Settings
from app.main import create_app
encoder, index, query = sys.argv[1:4]
app = create_app(Settings(encoder_path=encoder, index_path=index, encoder_threads=1))
with TestClient(app) as client:
    import time
    for _ in range(300):
        if client.get("/ready").status_code == 200:
            break
        time.sleep(0.05)
    info = client.get("/index").json()
    with open(query, "rb") as fh:
        found = client.post("/search?k=5", files={"image": ("q.png", fh.read())}).json()
print(json.dumps({"info": info, "ids": [n["id"] for n in found["neighbours"]], "torch": sys.modules["torch"]}))
"""


def run_without_torch(script: str, *paths: Path) -> Any:
    """Run `script` in a fresh interpreter; what it printed last, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_service_runs_the_export_without_torch(
    tiny_encoder: Path, tiny_index: Path, image_folder: Path, tmp_path: Path
) -> None:
    encoder = tmp_path / "encoder.pt"
    shutil.copy(tiny_encoder, encoder)
    export_onnx(encoder)
    index = tmp_path / "idx"
    shutil.copytree(tiny_index, index)
    query = sorted(image_folder.rglob("*.png"))[7]
    result = run_without_torch(SERVE_WITHOUT_TORCH, encoder, index, query)
    assert result["torch"] is None and result["info"]["encoder_runtime"] == "onnx"
    # The same neighbours as torch's embedding of the query's views, searched directly.
    views = embed_queries(load_encoder(tiny_encoder), [query.read_bytes()])
    _, want = search_views(load(tiny_index).search, views, 5)
    assert result["ids"] == want[0].tolist()


READY_WITHOUT_TORCH = """
import json, sys, time
sys.modules["torch"] = None
from fastapi.testclient import TestClient
from app.config import Settings
from app.main import create_app
app = create_app(Settings(encoder_path=sys.argv[1], index_path=sys.argv[2]))
with TestClient(app) as client:
    for _ in range(300):
        ready = client.get("/ready").json()
        if ready["detail"] != "loading the encoder and the index":
            break
        time.sleep(0.05)
print(json.dumps(ready))
"""


def test_a_torch_encoder_without_torch_says_how_to_export(tiny_encoder: Path, tiny_index: Path) -> None:
    ready = run_without_torch(READY_WITHOUT_TORCH, tiny_encoder, tiny_index)
    assert ready["ready"] is False and "export-onnx" in ready["detail"]
