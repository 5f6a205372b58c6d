"""Duplicate review through the API: a decision is shown on its group, hides it on request,
survives a rebuild and a restart, is exported, and can be taken back."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.app.conftest import wait_ready
from tests.app.test_writes import AUTH, add, open_client, wait_job
from tests.conftest import pattern_image

THRESHOLD = 0.9995


@pytest.fixture()
def writer(tiny_encoder: Path, index_copy: Path) -> Iterator[TestClient]:
    with open_client(tiny_encoder, index_copy) as c:
        wait_ready(c)
        yield c


def encoded(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **options)
    return buf.getvalue()


def group_of(client: TestClient, image_id: int, **params: object) -> dict | None:  # type: ignore[type-arg]
    body = client.get("/duplicates", params={"threshold": THRESHOLD, "limit": 100, **params}).json()
    return next((g for g in body["groups"] if image_id in [m["id"] for m in g["images"]]), None)


def test_a_decision_is_shown_kept_through_a_rebuild_exported_and_taken_back(
    writer: TestClient, tiny_encoder: Path, index_copy: Path
) -> None:
    pixels = np.kron(pattern_image(0, np.random.default_rng(42), 32), np.ones((4, 4, 1), np.uint8))  # 128 px
    (original,) = add(writer, encoded(pixels, "PNG"))
    (resaved,) = add(writer, encoded(pixels, "JPEG", quality=95))
    group = group_of(writer, int(original["id"]))  # type: ignore[arg-type]
    assert group is not None and sorted(m["id"] for m in group["images"]) == sorted([original["id"], resaved["id"]])
    assert group["status"] == "new" and group["review"] is None
    assert group["suggested"]["id"] == original["id"]  # as large, and less compressed
    assert "compressed" in group["suggested"]["reason"]

    ids = [m["id"] for m in group["images"]]
    body = {"ids": ids, "decision": "keep_one", "keep_id": original["id"]}
    assert writer.post("/duplicates/reviews", json=body).status_code == 401  # a write: the API key
    r = writer.post("/duplicates/reviews", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    review = r.json()
    assert review["keep_id"] == original["id"] and sorted(review["ids"]) == sorted(ids)
    shown = group_of(writer, int(original["id"]))  # type: ignore[arg-type]
    assert shown is not None and shown["status"] == "reviewed" and shown["review"]["id"] == review["id"]
    assert group_of(writer, int(original["id"]), reviewed=False) is None  # hidden on request

    job = writer.post("/index/rebuild", headers=AUTH).json()
    assert wait_job(writer, job["id"])["state"] == "succeeded"
    after = group_of(writer, int(original["id"]))  # type: ignore[arg-type]
    assert after is not None and after["status"] == "reviewed"  # a new version, the same decision
    exported = writer.get("/duplicates/reviews").json()["reviews"]
    assert [e["id"] for e in exported] == [review["id"]] and exported[0]["keep_id"] == original["id"]

    bad = {"ids": ids, "decision": "keep_one", "keep_id": 10**9}
    assert writer.post("/duplicates/reviews", json=bad, headers=AUTH).status_code == 422
    assert writer.post("/duplicates/reviews", json={"ids": [10**9, ids[0]], "decision": "keep_all"},
                       headers=AUTH).status_code == 404  # fmt: skip
    assert writer.delete(f"/duplicates/reviews/{review['id']}", headers=AUTH).status_code == 204
    assert group_of(writer, int(original["id"]))["status"] == "new"  # type: ignore[index]
    assert writer.delete(f"/duplicates/reviews/{review['id']}", headers=AUTH).status_code == 404


def test_a_decision_survives_a_restart(tiny_encoder: Path, index_copy: Path) -> None:
    pixels = np.kron(pattern_image(1, np.random.default_rng(43), 32), np.ones((4, 4, 1), np.uint8))
    with open_client(tiny_encoder, index_copy) as c:
        wait_ready(c)
        a, b = add(c, encoded(pixels, "PNG"), encoded(pixels, "JPEG", quality=95))
        r = c.post("/duplicates/reviews", json={"ids": [a["id"], b["id"]], "decision": "keep_all"}, headers=AUTH)
        assert r.status_code == 201
    with open_client(tiny_encoder, index_copy) as c:
        wait_ready(c)
        group = group_of(c, int(a["id"]))  # type: ignore[arg-type]
        assert group is not None and group["status"] == "reviewed" and group["review"]["decision"] == "keep_all"
