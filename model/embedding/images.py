"""Image bytes -> the (S, S, 3) uint8 square every other part of latent-search sees.

Open (header only, pixel count checked before any decoding), convert (any mode to RGB, EXIF
orientation applied, transparency onto white), trim a uniform frame (a mount, letterbox bars),
resize the shorter side to S and centre-crop.
Training, evaluation, index builds and the service all decode through here, so the four
cannot drift apart; it needs neither torch nor the dataset code, so the service imports it
alone. `decode_chunks` runs a decode over many items on a thread pool (PIL releases the GIL
while decoding), keeping order and skipping, with a count, what cannot be read.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps

from model.embedding.frames import trim_frame

LOG = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Largest image an offline job (train, index build) decodes: a 64-megapixel camera frame.
# Each decode thread holds one image at a time, so this bounds memory at ~200 MB a thread.
MAX_IMAGE_PIXELS = 64_000_000
# Largest upload the service decodes. Lower than the offline limit because a service holds
# one decoded image per concurrent request: 16 requests at 40 MP is ~1.9 GB of RGB.
UPLOAD_MAX_PIXELS = 40_000_000
# Modes whose pixels can be box-averaged as they are (`shrink`): not palette indices, not
# colours under transparency (composited onto white first).
AVERAGEABLE_MODES = frozenset({"L", "RGB", "RGBX", "CMYK", "YCbCr", "I", "F"})
# Formats the service accepts; anything else PIL recognises is an unsupported type (415).
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
# ISO base media files (an `ftyp` box first) whose brand says HEIF or AVIF: phones' photos that
# Pillow does not read without a plugin; named in the refusal rather than called unreadable.
HEIF_BRANDS = dict.fromkeys((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"), "HEIC") | {
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


class UnreadableImageError(ValueError):
    """The bytes are not an image we can decode (corrupt, truncated, unsupported)."""


class ImageTooLargeError(UnreadableImageError):
    """The image header claims more pixels than allowed (decompression-bomb guard)."""


class UnsupportedImageTypeError(UnreadableImageError):
    """A real image, in a format the service does not take."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (S, S, 3) uint8
    width: int  # the original's size, as its header gives it
    height: int


def open_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open image bytes lazily and check the pixel count from the header, before decoding."""
    if not data:
        raise UnreadableImageError("empty file")
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        raise UnsupportedImageTypeError(
            f"{HEIF_BRANDS[data[8:12]]} images are not supported: convert it to JPEG or PNG first "
            "(an iPhone saves JPEG with Settings > Camera > Formats > Most Compatible)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:  # PIL raises many types for garbage input
        raise UnreadableImageError(f"not a decodable image: {exc}") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
        )
    if width < 1 or height < 1:
        raise UnreadableImageError("image has no pixels")
    return img


def to_rgb(img: Image.Image, side: int = 0) -> Image.Image:
    """Decode fully and convert any mode (L, LA, P, RGBA, CMYK, I;16, ...) to RGB.

    EXIF orientation is applied; transparency is composited onto white so that a
    transparent background does not turn into arbitrary hidden colours. With `side`, a large
    image is box-reduced as early as its mode allows (`shrink`), so that what follows works on
    a few hundred pixels a side rather than on millions.
    """
    try:
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        img = shrink(img, side)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            hi = max(float(arr.max()), 1.0)
            img = Image.fromarray((arr * (255.0 / hi)).astype(np.uint8), mode="L")
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA", "PA"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return shrink(img if img.mode == "RGB" else img.convert("RGB"), side)
    except Exception as exc:
        raise UnreadableImageError(f"cannot decode image: {exc}") from exc


def shrink(img: Image.Image, side: int) -> Image.Image:
    """A decoded image reduced by the largest whole factor that keeps its shorter side >= `side`
    (a box filter: what JPEG's draft mode does inside libjpeg, for every other format), or the
    image itself when it is not twice that large or its mode cannot be averaged (palette,
    alpha: those are reduced after `to_rgb` converts them).

    Measured on 2560 x 1600 PNG screenshots squared to 224 px views (2 cores, 2026-12-06): the
    work after the PNG decode fell from ~100 to ~10 ms (BENCHMARKS.md, "Serving real uploads").
    """
    factor = min(img.size) // side if side > 0 else 1
    return img.reduce(factor) if factor >= 2 and img.mode in AVERAGEABLE_MODES else img


def square_resize(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size` and centre-crop: (size, size, 3) uint8."""
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=2.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """An RGB image -> (size, size, 3) uint8: its uniform frame trimmed (`trim_frame`), then
    `square_resize`. The one transform training, evaluation, indexing and queries share, so that
    a framed or letterboxed copy of an image is embedded like the image."""
    return square_resize(trim_frame(img), size)


def decode_opened(img: Image.Image, size: int) -> np.ndarray:
    """An image from `open_image` (header checked, not decoded yet) -> (size, size, 3) uint8."""
    if img.format == "JPEG":
        img.draft("RGB", (size, size))  # let libjpeg downscale by 1/2..1/8 while decoding
    return to_square(to_rgb(img, size), size)


def decode_square(data: bytes, size: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Bytes -> (size, size, 3) uint8, or UnreadableImageError."""
    return decode_opened(open_image(data, max_pixels), size)


def open_checked(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, formats: frozenset[str] | None = None) -> Image.Image:
    """`open_image` (header only), and with `formats`, any other format is an
    UnsupportedImageTypeError."""
    img = open_image(data, max_pixels)
    if formats is not None and img.format not in formats:
        raise UnsupportedImageTypeError(f"unsupported image type {img.format}; send JPEG, PNG, WebP, GIF, BMP or TIFF")
    return img


def decode_checked(img: Image.Image, size: int) -> DecodedImage:
    """An image from `open_checked` -> the square and the original's size."""
    width, height = img.size
    return DecodedImage(decode_opened(img, size), width, height)


def decode_image(
    data: bytes, size: int, max_pixels: int = MAX_IMAGE_PIXELS, formats: frozenset[str] | None = None
) -> DecodedImage:
    """Bytes -> the square and the original's size, opened once (see `open_checked`)."""
    return decode_checked(open_checked(data, max_pixels, formats), size)


@dataclass
class SkipCount:
    skipped: int = 0


def decode_chunks(
    items: Iterable[T],
    work: Callable[[T], R],
    *,
    workers: int,
    chunk_size: int,
    name: Callable[[T], str] = str,
    skips: SkipCount | None = None,
) -> Iterator[list[tuple[T, R]]]:
    """`work` over `items` on `workers` threads, `chunk_size` at a time, in order.

    Yields each chunk's (item, result) pairs; an item whose work raises UnreadableImageError
    is logged under `name(item)`, counted in `skips` and left out.
    """

    def attempt(item: T) -> R | None:
        try:
            return work(item)
        except UnreadableImageError as exc:
            LOG.warning("skipping unreadable image %s: %s", name(item), exc)
            return None

    def kept(chunk: list[T], results: Iterator[R | None]) -> list[tuple[T, R]]:
        pairs = []
        for item, result in zip(chunk, results, strict=True):
            if result is None:
                if skips is not None:
                    skips.skipped += 1
            else:
                pairs.append((item, result))
        return pairs

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        chunk: list[T] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= chunk_size:
                yield kept(chunk, pool.map(attempt, chunk))
                chunk = []
        if chunk:
            yield kept(chunk, pool.map(attempt, chunk))
