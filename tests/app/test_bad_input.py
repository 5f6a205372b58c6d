"""Hostile and odd inputs: each gets its documented status and a JSON detail, never a 500,
and the server keeps answering /health."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import encode


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _huge_png(side: int = 50_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    )


RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8)
JPEG = encode(PHOTO, "JPEG")
PNG = encode(PHOTO, "PNG")


def _exif_rotated() -> bytes:
    img = Image.fromarray(PHOTO)
    exif = img.getexif()
    exif[0x0112] = 6
    return _save(img, "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.fromarray(RNG.integers(0, 255, (20, 20, 3), dtype=np.uint8)).convert("P") for _ in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


CASES = {
    "empty": (b"", 400),
    "text": (b"hello, I am not an image", 400),
    "html": (b"<!doctype html><html><body><img src=x></body></html>", 400),
    "truncated jpeg": (JPEG[: len(JPEG) // 2], 400),
    "truncated png": (PNG[: len(PNG) // 2], 400),
    "50k x 50k png header": (_huge_png(), 413),
    "100 MP (10k x 10k) png header": (_huge_png(10_000), 413),
    "heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), 415),
    "1x1 image": (_save(Image.new("RGB", (1, 1), "blue"), "PNG"), 200),
    "16-bit png": (_save(Image.fromarray((RNG.integers(0, 65535, (30, 30))).astype(np.uint16)), "PNG"), 200),
    "cmyk jpeg": (_save(Image.fromarray(PHOTO).convert("CMYK"), "JPEG"), 200),
    "palette png": (_save(Image.fromarray(PHOTO).convert("P"), "PNG"), 200),
    "palette png with transparency": (_save(Image.fromarray(PHOTO).convert("P"), "PNG", transparency=0), 200),
    "animated gif": (_animated_gif(), 200),
    "exif rotated jpeg": (_exif_rotated(), 200),
    "grayscale with alpha": (_save(Image.fromarray(PHOTO).convert("LA"), "PNG"), 200),
    "ico (unsupported type)": (_save(Image.new("RGB", (16, 16)), "ICO"), 415),
}


@pytest.mark.parametrize("name", list(CASES))
def test_upload_gets_its_documented_status(client: TestClient, name: str) -> None:
    data, status = CASES[name]
    r = client.post("/search", files={"image": ("upload", data, "application/octet-stream")}, params={"k": 3})
    assert r.status_code == status, (name, r.text)
    if status != 200:
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    else:
        assert len(r.json()["neighbours"]) == 3
    assert client.get("/health").status_code == 200


AN_IMAGE = {"images": ("a.png", PNG, "image/png")}


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        ("post", "/search", {"files": {"img": ("a.png", PNG, "image/png")}}, 422),  # wrong field
        ("post", "/search", {"data": {"image": "not a file"}}, 422),
        ("post", "/search?k=100000", {"files": {"image": ("a.png", PNG, "image/png")}}, 422),
        ("post", "/search?k=-1", {"files": {"image": ("a.png", PNG, "image/png")}}, 422),
        ("post", "/search?k=abc", {"files": {"image": ("a.png", PNG, "image/png")}}, 422),
        ("post", "/search?min_score=7", {"files": {"image": ("a.png", PNG, "image/png")}}, 422),
        ("post", "/search/batch", {"files": []}, 422),
        ("get", "/images/123456789", {}, 404),
        ("get", "/images/-1", {}, 422),
        ("get", "/images/99999999999999999999999", {}, 422),
        ("get", "/images/..%2F..%2Fetc%2Fpasswd", {}, 404),
        ("get", "/images/1%00.png", {}, 422),
        ("get", "/images/123456789/similar", {}, 404),
        ("get", "/images/1/similar?k=0", {}, 422),
        ("delete", "/images/123456789", {}, 404),
        ("delete", "/images/abc", {}, 422),
        ("get", "/index/rebuild/..%2F..", {}, 404),
        # Metadata and filters: bounded printable text (labels <= 256, uris <= 4,096 characters).
        (
            "post",
            "/images",
            {"files": AN_IMAGE, "data": {"labels": "x" * 1_000_000}},
            422,
        ),
        ("post", "/images", {"files": AN_IMAGE, "data": {"labels": "a\x00b"}}, 422),
        ("post", "/images", {"files": AN_IMAGE, "data": {"uris": "u" * 4097}}, 422),
        ("post", "/images", {"files": AN_IMAGE, "data": {"uris": "a\r\nb"}}, 422),
        ("get", "/images?label=" + "x" * 257, {}, 422),
        ("get", "/images?uri_prefix=%1b%5B31m", {}, 422),
        ("get", "/images/1/similar?label=%00", {}, 422),
        ("post", "/search?label=" + "&label=a" * 101, {"files": {"image": ("a.png", PNG, "image/png")}}, 422),
        ("get", "/images?limit=0", {}, 422),
        ("get", "/images?cursor=-1", {}, 422),
        ("get", "/duplicates?threshold=0.1", {}, 422),
        ("get", "/duplicates?threshold=nan", {}, 422),
        ("get", "/map?limit=100000", {}, 422),
        ("put", "/images/1", {}, 405),
    ],
)
def test_bad_requests(client: TestClient, method: str, url: str, kwargs: dict[str, object], status: int) -> None:
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    assert client.get("/health").status_code == 200


def test_declared_but_oversized_body_is_refused_before_reading(client: TestClient) -> None:
    r = client.post("/search", content=b"x" * 10, headers={"content-length": str(10**12), "content-type": "image/png"})
    assert r.status_code == 413
