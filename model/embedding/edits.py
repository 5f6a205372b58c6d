"""The edits people make to images before they search with them (or re-upload them).

Each edit takes a PIL image and a `random.Random` (for the crop position) and returns a new RGB
image; the same seed gives the same edit. They are what the copy-detection benchmark
(`bench/copies.py`) and the label-free encoder chooser (`model.evaluation.copies`) query with.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

Edit = Callable[[Image.Image, random.Random], Image.Image]


def crop_area(fraction: float) -> Edit:
    """A random crop keeping `fraction` of the area, same aspect ratio."""

    def edit(img: Image.Image, rng: random.Random) -> Image.Image:
        w, h = img.size
        side = math.sqrt(fraction)
        cw, ch = max(1, round(w * side)), max(1, round(h * side))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return img.crop((left, top, left + cw, top + ch))

    return edit


def border(img: Image.Image, rng: random.Random) -> Image.Image:
    """A white frame 10 % of the width / height on every side."""
    w, h = img.size
    return ImageOps.expand(img, border=(round(0.1 * w), round(0.1 * h)), fill=(255, 255, 255))


def caption(img: Image.Image, rng: random.Random) -> Image.Image:
    """A black bar with white text across the bottom 15 %, as memes and watermarks have."""
    out = img.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    top = round(0.85 * h)
    draw.rectangle((0, top, w, h), fill=(0, 0, 0))
    draw.text((round(0.05 * w), top + (h - top) // 4), "when you see it " * 4, fill=(255, 255, 255))
    return out


def rotate(img: Image.Image, rng: random.Random) -> Image.Image:
    """10 degrees, canvas grown to fit, corners black."""
    return img.rotate(10, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0))


def jpeg(quality: int) -> Edit:
    def edit(img: Image.Image, rng: random.Random) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    return edit


def colour(img: Image.Image, rng: random.Random) -> Image.Image:
    """Brightness x1.3, saturation x1.5 (a phone's "vivid" filter)."""
    return ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(1.3)).enhance(1.5)


def grayscale(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.grayscale(img).convert("RGB")


def hflip(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.mirror(img)


def downscale(img: Image.Image, rng: random.Random) -> Image.Image:
    """To 64 px wide (a thumbnail), aspect kept."""
    w, h = img.size
    return img.resize((64, max(1, round(64 * h / w))), Image.Resampling.BICUBIC)


def crop_flip_jpeg(img: Image.Image, rng: random.Random) -> Image.Image:
    return jpeg(30)(hflip(crop_area(0.8)(img, rng), rng), rng)


EDITS: dict[str, Edit] = {
    "crop 80 %": crop_area(0.8),
    "crop 60 %": crop_area(0.6),
    "10 % border": border,
    "caption bar": caption,
    "rotate 10°": rotate,
    "JPEG q20": jpeg(20),
    "brightness+saturation": colour,
    "grayscale": grayscale,
    "horizontal flip": hflip,
    "downscale to 64 px": downscale,
    "crop+flip+JPEG": crop_flip_jpeg,
}


def apply(name: str, img: Image.Image, seed: int) -> Image.Image:
    return EDITS[name](img.convert("RGB"), random.Random(seed))
