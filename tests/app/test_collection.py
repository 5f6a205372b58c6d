"""The collection endpoints (browse, labels, duplicates, map), filters on every search, the
metadata limits and the limits stated in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index.store import load
from tests.app.conftest import wait_ready
from tests.app.test_writes import AUTH, add, open_client
from tests.conftest import pattern_png as png
from tests.index.test_duplicates import naive_groups


@pytest.fixture()
def writer(tiny_encoder: Path, index_copy: Path) -> Iterator[TestClient]:
    with open_client(tiny_encoder, index_copy, max_k=40, max_images_per_request=3) as c:
        wait_ready(c)
        yield c


def all_pages(client: TestClient, path: str, key: str, **params: object) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = 0
    while True:
        r = client.get(path, params={**params, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body[key])
        if body["next_cursor"] is None:
            return items
        cursor = body["next_cursor"]


def test_browse_pages_through_the_catalog_and_filters(client: TestClient, tiny_index: Path) -> None:
    index = load(tiny_index)
    rows = list(index.catalog.rows())
    index.close()
    assert [i["id"] for i in all_pages(client, "/images", "images", limit=7)] == [r.id for r in rows]
    label = rows[0].label
    got = all_pages(client, "/images", "images", limit=5, label=label, uri_prefix="train/")
    assert [i["id"] for i in got] == [r.id for r in rows if r.label == label and r.uri.startswith("train/")]
    labels = client.get("/labels").json()["labels"]
    assert {lab["label"]: lab["count"] for lab in labels} == {
        lab: sum(r.label == lab for r in rows) for lab in {r.label for r in rows}
    }


def test_every_search_takes_the_filters(client: TestClient, tiny_index: Path) -> None:
    index = load(tiny_index)
    rows = {r.id: r for r in index.catalog.rows()}
    ids = sorted(rows)
    vectors = index.vectors(np.array(ids))
    index.close()
    label = rows[ids[0]].label
    wanted = [i for i in ids if rows[i].label != label]  # the other labels: a query's own class is left out
    others = sorted({rows[i].label for i in wanted})
    query = png(5)
    params: dict[str, object] = {"k": 8, "label": others}
    hits = client.post("/search", files={"image": ("q.png", query, "image/png")}, params=params).json()["neighbours"]
    assert len(hits) == 8 and all(h["label"] in others for h in hits)
    batch = client.post("/search/batch", files=[("images", ("q.png", query, "image/png"))] * 2, params=params)
    assert [[h["id"] for h in r] for r in batch.json()["results"]] == [[h["id"] for h in hits]] * 2
    similar = client.get(f"/images/{ids[0]}/similar", params=params).json()["neighbours"]
    positions = [ids.index(i) for i in wanted]
    sims = vectors[positions] @ vectors[0]
    expected = [wanted[p] for p in np.argsort(-sims, kind="stable")[:8]]
    assert [h["id"] for h in similar] == expected  # exact index: brute force among the matching
    prefix = client.get(f"/images/{ids[0]}/similar", params={"k": 50, "uri_prefix": "test/"}).json()["neighbours"]
    assert prefix and all(h["uri"].startswith("test/") for h in prefix)
    nothing = client.get(f"/images/{ids[0]}/similar", params={"label": "no such label"}).json()["neighbours"]
    assert nothing == []


def test_duplicates_endpoint_matches_brute_force_and_pages(writer: TestClient, index_copy: Path) -> None:
    blob = png(77)
    add(writer, blob)  # the same bytes under a second uri: a byte copy
    r = writer.post("/images", files=[("images", ("x.png", blob, "image/png"))], data={"uris": ["mirror/x.png"]},
                    headers=AUTH)  # fmt: skip
    assert r.status_code == 201 and r.json()["images"][0]["created"] is False
    threshold = 0.999
    groups = all_pages(writer, "/duplicates", "groups", threshold=threshold, limit=2)
    index = load(index_copy, writable=True)  # the journal replayed: what the service holds
    ids = index.catalog.ids()
    vectors = index.vectors(np.array(ids))
    index.close()
    near = {frozenset(int(m["id"]) for m in g["images"]) for g in groups if not g["exact_only"]}  # type: ignore[index, union-attr]
    assert near == naive_groups(vectors, ids, threshold)
    copies = [m for g in groups for m in g["images"] if m["copies"]]  # type: ignore[union-attr, index]
    assert [m["copies"] for m in copies] == [["mirror/x.png"]]
    again = writer.get("/duplicates", params={"threshold": threshold, "limit": 2}).json()
    assert again["seconds"] == 0.0 and again["total_groups"] == len(groups)  # from the cache
    assert writer.get("/duplicates", params={"threshold": 0.2}).status_code == 422


def test_map_lists_every_image_and_drops_removed_ones(writer: TestClient) -> None:
    points = all_pages(writer, "/map", "points", limit=10)
    listed = all_pages(writer, "/images", "images", limit=500)
    assert sorted(int(p["id"]) for p in points) == [int(i["id"]) for i in listed]  # type: ignore[call-overload]
    assert all(0 <= float(p["x"]) <= 1 and 0 <= float(p["y"]) <= 1 for p in points)  # type: ignore[arg-type]
    gone = int(points[0]["id"])  # type: ignore[call-overload]
    assert writer.delete(f"/images/{gone}", headers=AUTH).status_code == 204
    assert gone not in {p["id"] for p in all_pages(writer, "/map", "points", limit=10)}


@pytest.mark.parametrize(
    ("field", "value"),
    [("labels", "x" * 257), ("labels", "bad\x00label"), ("uris", "u" * 4097), ("uris", "line\nbreak"), ("labels", "")],
)
def test_metadata_limits(writer: TestClient, field: str, value: str) -> None:
    r = writer.post("/images", files=[("images", ("a.png", png(3), "image/png"))], data={field: [value]}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert writer.get("/images", params={"label": "x" * 257}).status_code == 422


def test_schema_states_the_configured_limits(writer: TestClient) -> None:
    schema = writer.get("/openapi.json").json()
    k = next(p for p in schema["paths"]["/search"]["post"]["parameters"] if p["name"] == "k")
    assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, 40)
    bodies = schema["components"]["schemas"]
    batch = next(b for name, b in bodies.items() if name.startswith("Body_search_batch"))
    assert batch["properties"]["images"]["maxItems"] == 3 and batch["properties"]["images"]["minItems"] == 1
    assert writer.get("/images/1/similar", params={"k": 41}).status_code == 422
    for path in ("/images", "/labels", "/duplicates", "/map"):
        assert "get" in schema["paths"][path]


def test_method_not_allowed_names_every_method_of_the_path(writer: TestClient) -> None:
    r = writer.put("/images/1")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) >= {"GET", "DELETE"}
    assert writer.delete("/labels").headers["allow"] == "GET"


def test_duplicates_without_a_threshold_use_the_measured_one(client: TestClient) -> None:
    body = client.get("/duplicates").json()
    calibration = body["calibration"]
    assert calibration is not None and body["threshold"] == calibration["threshold"]
    assert 0.5 <= body["threshold"] <= 0.999 and calibration["images"] == 54
    given = client.get("/duplicates", params={"threshold": 0.99}).json()
    assert given["calibration"] is None and given["threshold"] == 0.99


def test_every_operation_has_examples(writer: TestClient) -> None:
    """Each parameter carries an example, and each success answer with a body shows one."""
    schema = writer.get("/openapi.json").json()
    components = schema["components"]["schemas"]

    def shows_example(node: object) -> bool:
        if isinstance(node, list):
            return any(shows_example(n) for n in node)
        if not isinstance(node, dict):
            return False
        if "examples" in node or "example" in node:
            return True
        if "$ref" in node:
            return shows_example(components[node["$ref"].rsplit("/", 1)[1]])
        return any(shows_example(node.get(key)) for key in ("schema", "content", "anyOf", "items"))

    missing = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            missing += [f"{label} param {p['name']}" for p in operation.get("parameters", []) if not shows_example(p)]
            for code, response in operation["responses"].items():
                if code.startswith("2") and "content" in response:
                    content = response["content"]
                    if not any(shows_example(c) for c in content.values()):
                        missing.append(f"{label} {code}")
    assert not missing, missing
