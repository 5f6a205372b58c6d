"""The one decode path (model.embedding.images): any mode to RGB, transparency, EXIF, the pixel limit
before decoding, unsupported formats, a uniform frame trimmed, and threaded decoding in order
with a skip count."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from model.embedding.frames import frame_box
from model.embedding.images import (
    SUPPORTED_FORMATS,
    ImageTooLargeError,
    SkipCount,
    UnreadableImageError,
    UnsupportedImageTypeError,
    decode_chunks,
    decode_image,
    decode_square,
    to_square,
)
from tests.conftest import encode


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


# EXIF orientation -> how the stored pixels are turned for display (EXIF 2.32, tag 0x0112): the
# stored image of an upright picture is the inverse of that turn applied to it.
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,  # mirrored
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,  # mirrored, turned
    6: Image.Transpose.ROTATE_90,  # displayed turned 90 degrees clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # displayed turned 90 degrees counter-clockwise
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("fmt", "scale"), [("JPEG", 1), ("PNG", 8), ("WEBP", 8)])
def test_every_exif_orientation_decodes_upright(orientation: int, fmt: str, scale: int) -> None:
    """A phone photo stored sideways or mirrored, with its orientation tag, decodes as the upright
    picture does (the square from the upright file without a tag is the reference); at 8 x the
    size, a PNG or WebP is box-reduced before it is squared, and the turn still applies."""
    upright = np.zeros((40, 64, 3), dtype=np.uint8)
    upright[:16, :24] = (255, 255, 255)  # a white block top left
    upright[24:, 40:] = (200, 30, 30)  # a red one bottom right
    upright = upright.repeat(scale, axis=0).repeat(scale, axis=1)
    reference = decode_square(encode(upright, fmt), 32)
    stored = Image.fromarray(upright)
    turn = STORED_FROM_UPRIGHT[orientation]
    if turn is not None:
        stored = stored.transpose(turn)
    exif = stored.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format=fmt, exif=exif.tobytes(), quality=95)
    out = decode_square(buf.getvalue(), 32)
    assert np.abs(out.astype(int) - reference.astype(int)).mean() < 6


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L"])
def test_a_large_image_decodes_like_its_full_size_square(mode: str) -> None:
    """Box-reducing a large decode first (palette and alpha images after conversion to RGB)
    changes the square little: against resizing the file's full-size pixels directly, a mean
    difference under 3 levels of 255 (averaging palette indices would be far off)."""
    data = encode(np.asarray(photo_like(1200, 900)), "PNG", mode=mode)
    reference = to_square(Image.open(io.BytesIO(data)).convert("RGB"), 64)
    assert np.abs(decode_square(data, 64).astype(int) - reference.astype(int)).mean() < 3


def test_heic_is_refused_by_name_with_what_to_do() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    with pytest.raises(UnsupportedImageTypeError, match=r"HEIC images are not supported: convert it to JPEG"):
        decode_image(heic, 32)


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


def photo_like(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus noise: no uniform line anywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 200 / w, y * 200 / h, (x + y) * 100 / (w + h)], axis=2) + 30
    return Image.fromarray(np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8))


def test_a_photo_without_a_frame_is_not_trimmed() -> None:
    img = photo_like(120, 90)
    assert frame_box(np.asarray(img)) == (0, 0, 120, 90)


@pytest.mark.parametrize("fill", [(255, 255, 255), (0, 0, 0), (90, 120, 200)])
def test_a_mount_or_border_of_any_colour_is_trimmed_to_the_image(fill: tuple[int, int, int]) -> None:
    img = photo_like(120, 90)
    framed = ImageOps.expand(img, border=(12, 9), fill=fill)  # 10 % of each side, as people frame
    assert frame_box(np.asarray(framed)) == (12, 9, 132, 99)
    # so the framed copy is embedded from the same square as the image itself
    assert np.array_equal(to_square(framed, 32), to_square(img, 32))


def test_a_tall_object_on_a_plain_background_keeps_its_whole_height() -> None:
    canvas = np.full((100, 100, 3), 255, np.uint8)
    canvas[20:80, 40:60] = np.asarray(photo_like(20, 60))  # a bottle: 20 wide, 60 tall
    # trimmed rows 20 + 20, columns 40 + 40, then widened back to a square
    assert frame_box(canvas) == (20, 20, 80, 80)


def test_a_mount_around_an_image_with_a_plain_background_comes_off_like_that_background() -> None:
    item = np.zeros((28, 28, 3), np.uint8)  # a Fashion-MNIST-like item on black
    item[4:26, 6:22] = np.asarray(photo_like(16, 22))
    img = Image.fromarray(item)
    framed = ImageOps.expand(img, border=3, fill=(255, 255, 255))
    assert np.array_equal(to_square(framed, 24), to_square(img, 24))


def test_a_jpeg_compressed_frame_is_still_found() -> None:
    framed = ImageOps.expand(photo_like(200, 150), border=(20, 15), fill=(255, 255, 255))
    buf = io.BytesIO()
    framed.save(buf, format="JPEG", quality=30)
    left, top, right, bottom = frame_box(np.asarray(Image.open(buf).convert("RGB")))
    assert 17 <= left <= 20 and 12 <= top <= 15 and 220 <= right <= 223 and 165 <= bottom <= 168
    assert abs((right - left) * 150 - (bottom - top) * 200) <= 200  # the image's aspect ratio


def test_at_most_forty_percent_goes_from_a_side() -> None:
    canvas = np.full((100, 100, 3), 255, np.uint8)
    canvas[45:55, 45:55] = (200, 30, 30)  # a small object on white
    assert frame_box(canvas) == (40, 40, 60, 60)
    assert frame_box(np.full((40, 60, 3), 128, np.uint8)) == (24, 16, 36, 24)  # a blank image keeps its middle
    assert frame_box(np.zeros((1, 1, 3), np.uint8)) == (0, 0, 1, 1)


def test_decoding_trims_the_frame_of_an_uploaded_file() -> None:
    img = photo_like(64, 48)
    buf = io.BytesIO()
    ImageOps.expand(img, border=(8, 6), fill=(255, 255, 255)).save(buf, format="PNG")
    # decoding box-reduces by 2 first (shrink), which maps the 8 x 6 frame onto whole pixels
    assert np.array_equal(decode_square(buf.getvalue(), 24), decode_square(encode(np.asarray(img), "PNG"), 24))
    assert np.abs(decode_square(buf.getvalue(), 24).astype(int) - to_square(img, 24)).mean() < 3
