"""The one decode path (model.images): any mode to RGB, transparency, EXIF, the pixel limit
before decoding, unsupported formats, and threaded decoding in order with a skip count."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from model.images import (
    SUPPORTED_FORMATS,
    ImageTooLargeError,
    SkipCount,
    UnreadableImageError,
    UnsupportedImageTypeError,
    decode_chunks,
    decode_image,
    decode_square,
)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16"])
def test_any_mode_decodes_to_rgb(mode: str) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img = Image.fromarray(arr).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 256)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    out = decode_square(buf.getvalue(), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # black but fully transparent
    out = decode_square(_png_rgba(rgba), 8)
    assert (out == 255).all()


def _png_rgba(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


def test_exif_rotation_is_applied() -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = decode_square(buf.getvalue(), 20)  # displayed as 20 wide x 40 tall: top half white
    assert out[:5].mean() > 200 and out[-5:].mean() < 50


def test_header_pixel_limit_is_checked_before_decoding() -> None:
    # A valid PNG header claiming 50,000 x 50,000 pixels with almost no data behind it.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    with pytest.raises(ImageTooLargeError):
        decode_square(png, 32, max_pixels=10_000_000)
    with pytest.raises(UnreadableImageError):
        decode_square(b"<html>hello</html>", 32)


def test_decode_image_reports_the_original_size_and_refuses_other_formats() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(buf, format="PNG")
    decoded = decode_image(buf.getvalue(), 16, formats=SUPPORTED_FORMATS)
    assert (decoded.width, decoded.height) == (50, 30) and decoded.pixels.shape == (16, 16, 3)
    ico = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(ico, format="ICO")
    with pytest.raises(UnsupportedImageTypeError, match="unsupported image type ICO"):
        decode_image(ico.getvalue(), 16, formats=SUPPORTED_FORMATS)
    assert decode_image(ico.getvalue(), 16).pixels.shape == (16, 16, 3)  # offline jobs take any format


def test_decode_chunks_keeps_order_and_counts_what_it_skips() -> None:
    def work(i: int) -> int:
        if i % 5 == 0:
            raise UnreadableImageError("bad")
        return i * 10

    skips = SkipCount()
    chunks = list(decode_chunks(range(23), work, workers=3, chunk_size=4, skips=skips))
    assert all(len(c) <= 4 for c in chunks)
    pairs = [p for c in chunks for p in c]
    assert pairs == [(i, i * 10) for i in range(23) if i % 5]
    assert skips.skipped == 5
