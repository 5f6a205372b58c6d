"""Every endpoint's success path and documented errors, inside the app's lifespan."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from index.store import load
from model.embedding.images import to_square
from model.embedding.runtime import load_runtime
from tests.app.conftest import make_settings, wait_ready
from tests.conftest import encode, pattern_image


def png(cls: int = 0, seed: int = 0) -> bytes:
    return encode(pattern_image(cls, np.random.default_rng(seed)), "PNG")


def indexed_file(image_folder: Path) -> bytes:
    return sorted(image_folder.rglob("*.png"))[0].read_bytes()


def test_search_returns_neighbours_with_catalog_fields(client: TestClient, image_folder: Path) -> None:
    r = client.post("/search", files={"image": ("q.png", indexed_file(image_folder), "image/png")}, params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["neighbours"]) == 5 and body["index_version"]
    first = body["neighbours"][0]
    assert first["score"] > 0.999  # the indexed image itself
    assert set(first) == {"id", "score", "uri", "label", "width", "height"}
    assert [n["score"] for n in body["neighbours"]] == sorted((n["score"] for n in body["neighbours"]), reverse=True)
    assert set(body["timings"]) == {"decode_ms", "embed_ms", "search_ms"}


def _views_by_hand(data: bytes, size: int) -> np.ndarray:
    """The query views, cut with PIL directly: whole, without the bottom / top 15 %, the middle 60 %."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    m = (1 - 0.6**0.5) / 2
    boxes = [(0, 0, w, h), (0, 0, w, round(0.85 * h)), (0, round(0.15 * h), w, h)]
    boxes.append((round(m * w), round(m * h), round((1 - m) * w), round((1 - m) * h)))
    return np.stack([to_square(img.crop(box), size) for box in boxes])


@pytest.mark.parametrize("views", [True, False])
def test_an_upload_ranks_images_by_its_best_view(tiny_encoder: Path, tiny_index: Path, views: bool) -> None:
    """Each image scores the best cosine over the query's views, checked against a brute-force
    search of every stored vector; LATENT_SEARCH_QUERY_VIEWS=false searches the whole image alone."""
    encoder = load_runtime(tiny_encoder)
    index = load(tiny_index)
    ids = np.array(index.catalog.ids())
    stored = index.vectors(ids)
    index.close()
    data = png(2, 11)
    pixels = _views_by_hand(data, encoder.image_size)
    sims = (encoder.embed_pixels(pixels if views else pixels[:1]) @ stored.T).max(axis=0)
    order = np.argsort(-sims)[:6]
    whole = encoder.embed_pixels(pixels[:1]) @ stored.T
    assert np.allclose(whole[0, order], sims[order]) != views  # the views change this query's scores
    with TestClient(create_app(make_settings(tiny_encoder, tiny_index, query_views=views))) as c:
        wait_ready(c)
        hits = c.post("/search", files={"image": ("q.png", data, "image/png")}, params={"k": 6}).json()["neighbours"]
        batch = c.post("/search/batch", files=[("images", ("q.png", data, "image/png"))], params={"k": 6}).json()
    assert [n["id"] for n in hits] == ids[order].tolist()
    np.testing.assert_allclose([n["score"] for n in hits], sims[order], atol=1e-5)
    assert [n["id"] for n in batch["results"][0]] == ids[order].tolist()


def test_min_score_filters(client: TestClient) -> None:
    r = client.post("/search", files={"image": ("q.png", png(), "image/png")}, params={"k": 50, "min_score": 0.99})
    assert r.status_code == 200
    assert all(n["score"] >= 0.99 for n in r.json()["neighbours"])


def test_batch_search_one_list_per_image(client: TestClient) -> None:
    files = [("images", (f"{i}.png", png(i % 3, i), "image/png")) for i in range(3)]
    r = client.post("/search/batch", files=files, params={"k": 4})
    assert r.status_code == 200, r.text
    assert [len(x) for x in r.json()["results"]] == [4, 4, 4]


def test_image_bytes_and_more_like_this(client: TestClient, image_folder: Path) -> None:
    hits = client.post("/search", files={"image": ("q.png", indexed_file(image_folder), "image/png")}).json()
    image_id = hits["neighbours"][0]["id"]
    r = client.get(f"/images/{image_id}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == indexed_file(image_folder)
    r = client.get(f"/images/{image_id}/similar", params={"k": 3})
    assert r.status_code == 200
    ids = [n["id"] for n in r.json()["neighbours"]]
    assert len(ids) == 3 and image_id not in ids


def test_index_health_ready_metrics_and_page(client: TestClient) -> None:
    info = client.get("/index").json()
    assert info["count"] == 54 and info["index_type"] == "Flat" and info["dim"] == 32
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["ready"] is True
    client.post("/search", files={"image": ("q.png", png(), "image/png")})
    text = client.get("/metrics").text
    assert 'latent_search_requests_total{endpoint="/search",method="POST",status="200"}' in text
    assert 'latent_search_stage_seconds_count{stage="embed"}' in text
    assert "latent_search_index_images 54.0" in text
    page = client.get("/")
    assert page.status_code == 200 and "Drop an image here" in page.text


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/search",
        "/search/batch",
        "/images/{image_id}",
        "/images/{image_id}/similar",
        "/index",
        "/health",
        "/ready",
        "/metrics",
    ):
        assert path in paths, path
    assert {"400", "413", "415", "422", "503"} <= set(paths["/search"]["post"]["responses"])
    assert all(op.get("summary") for ops in paths.values() for op in ops.values())


def _claims_huge_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _ico() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="ICO")
    return buf.getvalue()


def test_error_statuses(client: TestClient) -> None:
    def post(data: bytes, **params: object) -> tuple[int, object]:
        r = client.post("/search", files={"image": ("x", data, "application/octet-stream")}, params=params)
        return r.status_code, r.json()["detail"]

    assert post(b"")[0] == 400
    assert post(b"<html><body>hi</body></html>")[0] == 400
    full = png()
    assert post(full[: len(full) // 2])[0] == 400
    assert post(_ico())[0] == 415
    assert post(_claims_huge_png())[0] == 413
    assert post(b"\x89PNG" + b"\0" * 300_000)[0] == 413  # over max_upload_bytes
    assert post(full, k=0)[0] == 422
    assert post(full, k=101)[0] == 422
    assert post(full, k=-5)[0] == 422
    assert client.post("/search", files={"wrong": ("x.png", full, "image/png")}).status_code == 422
    many = [("images", (f"{i}.png", full, "image/png")) for i in range(5)]
    assert client.post("/search/batch", files=many).status_code == 422
    assert client.get("/images/999999").status_code == 404
    assert client.get("/images/999999/similar").status_code == 404
    assert client.get("/images/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/health").status_code == 200


def test_not_ready_answers_503(tiny_encoder: Path, tmp_path: Path) -> None:
    app = create_app(make_settings(tiny_encoder, tmp_path / "missing-index"))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        for _ in range(200):
            r = c.get("/ready")
            if r.json()["detail"] and "IndexNotFound" in r.json()["detail"]:
                break
        assert r.status_code == 503 and "index build" in r.json()["detail"]
        s = c.post("/search", files={"image": ("q.png", png(), "image/png")})
        assert s.status_code == 503 and "not loaded" in s.json()["detail"]
        assert c.get("/index").status_code == 503


def test_index_reports_its_backend_and_a_mismatched_setting_is_refused(tiny_encoder: Path, tiny_index: Path) -> None:
    """GET /index names the backend the index uses; LATENT_SEARCH_VECTOR_BACKEND set to the
    other one keeps the service unready with the command that rebuilds."""
    with TestClient(create_app(make_settings(tiny_encoder, tiny_index))) as c:
        wait_ready(c)
        info = c.get("/index").json()
        backend = info["backend"]
        assert backend in ("faiss", "milvus") and info["recall_at_10"] is not None
        assert (info["vector_store"] or {}).get("backend", "faiss") == backend
    other = "faiss" if backend == "milvus" else "milvus"
    with TestClient(create_app(make_settings(tiny_encoder, tiny_index, vector_backend=other))) as c:
        for _ in range(400):
            r = c.get("/ready")
            if "keeps its vectors" in (r.json()["detail"] or ""):
                break
            time.sleep(0.05)
        assert r.status_code == 503 and f"keeps its vectors in {backend}" in r.json()["detail"]
        assert f"--backend {other}" in r.json()["detail"]
