"""A uniform frame around an image (a mount, a coloured border, letterbox bars, a screenshot's
padding): found and trimmed before an image is squared (`model.embedding.images.to_square`), so
that a framed copy of an image is embedded like the image."""

from __future__ import annotations

import numpy as np
from PIL import Image

# A uniform frame around an image (to_square): a line belongs to it when this share of its pixels
# is within this many levels (any channel) of the frame's colour; at most this share of a
# dimension goes from each side.
FRAME_SHARE = 0.98
FRAME_TOLERANCE = 24
FRAME_MAX = 0.4
FRAME_PROBE = 256
_LEVELS = np.arange(256)


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
