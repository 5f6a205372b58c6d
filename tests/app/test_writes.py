"""Adding, removing, durability across restarts, API keys, and the background rebuild."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings, wait_ready
from tests.conftest import pattern_png as png

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def open_client(encoder: Path, index: Path, **settings: object) -> TestClient:
    return TestClient(create_app(make_settings(encoder, index, api_key=KEY, **settings)))


@pytest.fixture()
def writer(tiny_encoder: Path, index_copy: Path) -> Iterator[TestClient]:
    with open_client(tiny_encoder, index_copy) as c:
        wait_ready(c)
        yield c


def add(client: TestClient, *blobs: bytes, **form: list[str]) -> list[dict[str, object]]:
    files = [("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)]
    r = client.post("/images", files=files, data=form, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()["images"]  # type: ignore[no-any-return]


def test_add_search_dedupe_delete(writer: TestClient) -> None:
    blob = png(1)
    (first,) = add(writer, blob, labels=["mine"], uris=["camera/1.png"])
    assert first["created"] is True
    assert writer.get("/index").json()["count"] == 55
    hits = writer.post("/search", files={"image": ("q.png", blob, "image/png")}, params={"k": 1}).json()
    assert hits["neighbours"][0]["id"] == first["id"] and hits["neighbours"][0]["label"] == "mine"
    assert hits["neighbours"][0]["uri"] == "camera/1.png"
    assert writer.get(f"/images/{first['id']}").content == blob
    (again,) = add(writer, blob)
    assert again == {**first, "created": False}
    assert writer.delete(f"/images/{first['id']}", headers=AUTH).status_code == 204
    assert writer.get(f"/images/{first['id']}").status_code == 404
    assert writer.delete(f"/images/{first['id']}", headers=AUTH).status_code == 404
    assert writer.get("/index").json()["count"] == 54
    hits = writer.post("/search", files={"image": ("q.png", blob, "image/png")}, params={"k": 54}).json()
    assert first["id"] not in [n["id"] for n in hits["neighbours"]]


def test_a_bad_image_in_a_batch_writes_nothing(writer: TestClient) -> None:
    files = [("images", ("a.png", png(2), "image/png")), ("images", ("b.png", b"not an image", "image/png"))]
    assert writer.post("/images", files=files, headers=AUTH).status_code == 400
    assert writer.get("/index").json()["count"] == 54

    # More labels than images: the image gets the first, the answer says the other went unused.
    r = writer.post("/images", files=files[:1], data={"labels": ["a", "b"]}, headers=AUTH)
    assert r.status_code == 201 and r.json()["warnings"] == ["2 labels for 1 image(s): the last 1 were not used"]
    (added,) = r.json()["images"]
    assert writer.get("/images", params={"label": "a"}).json()["images"][0]["id"] == added["id"]


def test_api_key_guards_writes_only(writer: TestClient) -> None:
    files = {"images": ("a.png", png(3), "image/png")}
    assert writer.post("/images", files=files).status_code == 401
    assert writer.post("/images", files=files, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert writer.post("/images", files=files, headers={"Authorization": "Basic abc"}).status_code == 401
    assert writer.delete("/images/1").status_code == 401
    assert writer.post("/index/rebuild").status_code == 401
    assert writer.post("/search", files={"image": ("q.png", png(3), "image/png")}).status_code == 200


def test_writes_survive_a_restart(tiny_encoder: Path, index_copy: Path) -> None:
    with open_client(tiny_encoder, index_copy) as c:
        wait_ready(c)
        added = [a["id"] for a in add(c, png(10), png(11))]
        assert c.delete("/images/1", headers=AUTH).status_code == 204
    with open_client(tiny_encoder, index_copy) as c:
        wait_ready(c)
        assert c.get("/index").json()["count"] == 55
        assert all(c.get(f"/images/{i}").status_code == 200 for i in added)
        assert c.get("/images/1").status_code == 404


def wait_job(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/index/rebuild/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"rebuild {job_id} did not finish")


def test_rebuild_swaps_in_a_new_version_and_keeps_writes(tiny_encoder: Path, index_copy: Path) -> None:
    with open_client(tiny_encoder, index_copy, rebuild_duty_cycle=0.05) as c:
        wait_ready(c)
        before = c.get("/index").json()["version"]
        r = c.post("/index/rebuild", headers=AUTH)
        assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
        assert c.post("/index/rebuild", headers=AUTH).status_code == 409
        late = [a["id"] for a in add(c, png(20))]  # arrives while the rebuild runs
        job = wait_job(c, r.json()["id"])
        assert job["state"] == "succeeded", job
        info = c.get("/index").json()
        assert info["version"] == job["version"] != before and info["count"] == 55
        assert c.get(f"/images/{late[0]}").status_code == 200
        after_swap = [a["id"] for a in add(c, png(21))]
    with open_client(tiny_encoder, index_copy) as c:  # the new version and its journal reload
        wait_ready(c)
        assert c.get("/index").json()["version"] == job["version"]
        assert all(c.get(f"/images/{i}").status_code == 200 for i in late + after_swap)
        assert c.get("/index").json()["count"] == 56


def test_failed_rebuild_leaves_the_live_index(writer: TestClient, tmp_path: Path) -> None:
    before = writer.get("/index").json()
    r = writer.post("/index/rebuild", json={"encoder_path": str(tmp_path / "nope.pt")}, headers=AUTH)
    job = wait_job(writer, r.json()["id"])
    assert job["state"] == "failed" and "not found" in str(job["error"])
    assert writer.get("/index").json() == before
    assert writer.get("/index/rebuild/unknown").status_code == 404
