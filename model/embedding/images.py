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

LOG = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Largest image an offline job (train, index build) decodes: a 64-megapixel camera frame.
# Each decode thread holds one image at a time, so this bounds memory at ~200 MB a thread.
MAX_IMAGE_PIXELS = 64_000_000
# Largest upload the service decodes. Lower than the offline limit because a service holds
# one decoded image per concurrent request: 16 requests at 40 MP is ~1.9 GB of RGB.
UPLOAD_MAX_PIXELS = 40_000_000
# A uniform frame around an image (to_square): a line belongs to it when this share of its pixels
# is within this many levels (any channel) of the frame's colour; at most this share of a
# dimension goes from each side.
FRAME_SHARE = 0.98
FRAME_TOLERANCE = 24
FRAME_MAX = 0.4
FRAME_PROBE = 256
_LEVELS = np.arange(256)
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


def to_rgb(img: Image.Image) -> Image.Image:
    """Decode fully and convert any mode (L, LA, P, RGBA, CMYK, I;16, ...) to RGB.

    EXIF orientation is applied; transparency is composited onto white so that a
    transparent background does not turn into arbitrary hidden colours.
    """
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
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
        return img.convert("RGB")
    except Exception as exc:
        raise UnreadableImageError(f"cannot decode image: {exc}") from exc


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


def frame_trims(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """How many outer lines of one colour each side of an RGB array has: (left, top, right, bottom).

    A line counts when at least FRAME_SHARE of its pixels are within FRAME_TOLERANCE (any
    channel) of the side's outermost line's mean colour; at most FRAME_MAX of a dimension a side.
    """
    h, w = pixels.shape[:2]

    def depth(lines: np.ndarray) -> int:  # lines: (n, length, 3) uint8, outermost first
        if not len(lines):
            return 0
        colour = lines[0].mean(axis=0)
        outer = np.abs(lines[0] - colour).max(axis=1) <= FRAME_TOLERANCE
        if outer.mean() < FRAME_SHARE:  # most images: no frame, and only the outermost line is read
            return 0
        # per channel, which of the 256 levels are near the frame's colour (a table lookup is
        # far cheaper than arithmetic on every pixel)
        tables = [np.abs(_LEVELS - c) <= FRAME_TOLERANCE for c in colour]

        def near(part: np.ndarray) -> np.ndarray:
            ok = tables[0][part[..., 0]] & tables[1][part[..., 1]] & tables[2][part[..., 2]]
            return np.asarray(ok.mean(axis=1) >= FRAME_SHARE)

        done = 1
        while done < len(lines):
            chunk = near(lines[done : done + done])  # 1, 2, 4, ... lines at a time
            if not chunk.all():
                return done + int(np.argmin(chunk))
            done += len(chunk)
        return done

    return (
        depth(pixels[:, : int(w * FRAME_MAX)].transpose(1, 0, 2)),
        depth(pixels[: int(h * FRAME_MAX)]),
        depth(pixels[:, w - 1 : w - 1 - int(w * FRAME_MAX) : -1].transpose(1, 0, 2)),
        depth(pixels[h - 1 : h - 1 - int(h * FRAME_MAX) : -1]),
    )


def _give_back(near: int, far: int, extra: int) -> tuple[int, int]:
    """Shrink two opposite trims by `extra` lines in all, as evenly as they allow."""
    back_near = min(near, max(extra - far, extra // 2))
    return near - back_near, far - min(far, extra - back_near)


def frame_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of an RGB array without its uniform frame.

    A frame is what people put around an image: a white mount, a coloured border, a screenshot's
    padding. Two layers are trimmed (a mount around an image with a plain background comes off
    down to where the image's own background would), at most FRAME_MAX of a dimension a side,
    and the box is then widened back to the array's aspect ratio, so that the square crop
    after it sees an object on a plain background whole (a tall bottle keeps its cap) and a
    framed copy of an image gets the image's own box.
    """
    h, w = pixels.shape[:2]
    left, top, right, bottom = 0, 0, 0, 0
    for _ in range(2):
        inner = pixels[top : h - bottom, left : w - right]
        if inner.shape[0] < 2 or inner.shape[1] < 2:
            break
        more = frame_trims(inner)
        if not any(more):
            break
        left, top, right, bottom = (a + b for a, b in zip((left, top, right, bottom), more, strict=True))
    cap_w, cap_h = int(w * FRAME_MAX), int(h * FRAME_MAX)
    left, right, top, bottom = min(left, cap_w), min(right, cap_w), min(top, cap_h), min(bottom, cap_h)
    bw, bh = w - left - right, h - top - bottom
    if bw * h > bh * w:  # relatively wider than the array: give rows back
        top, bottom = _give_back(top, bottom, min(top + bottom, round(bw * h / w) - bh))
    elif bw * h < bh * w:
        left, right = _give_back(left, right, min(left + right, round(bh * w / h) - bw))
    return left, top, w - right, h - bottom


def trim_frame(img: Image.Image) -> Image.Image:
    """An RGB image without its uniform frame (`frame_box`); the image itself when it has none."""
    # The frame is looked for on a box-reduced copy of at most ~2 * FRAME_PROBE px a side (an
    # int factor, so the box maps back exactly up to that factor): cheap for a camera frame.
    factor = max(1, max(img.size) // FRAME_PROBE)
    probe = img.reduce(factor) if factor > 1 else img
    left, top, right, bottom = frame_box(np.asarray(probe))
    if (left, top, right, bottom) == (0, 0, *probe.size):
        return img
    w, h = img.size
    return img.crop((left * factor, top * factor, min(w, right * factor), min(h, bottom * factor)))


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """An RGB image -> (size, size, 3) uint8: its uniform frame trimmed (`trim_frame`), then
    `square_resize`. The one transform training, evaluation, indexing and queries share, so that
    a framed or letterboxed copy of an image is embedded like the image."""
    return square_resize(trim_frame(img), size)


def decode_opened(img: Image.Image, size: int) -> np.ndarray:
    """An image from `open_image` (header checked, not decoded yet) -> (size, size, 3) uint8."""
    if img.format == "JPEG":
        img.draft("RGB", (size, size))  # let libjpeg downscale by 1/2..1/8 while decoding
    return to_square(to_rgb(img), size)


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
