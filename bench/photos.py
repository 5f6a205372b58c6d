"""Assemble a small collection of real photographs from what installed packages ship.

    apt-get install gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers sway-backgrounds \\
        lomiri-wallpapers                                  # Debian's desktop backgrounds
    uv run python -m bench.photos --out /tmp/photos       # + scikit-image's bundled sample photos

Writes OUT/<source>-<name>.jpg, each scaled so its longer side is at most --max-side (quality 92).
Wallpapers often ship one picture at several resolutions: only the largest file is kept, so the
collection holds no resized copies of its own images (they would make copy detection ambiguous).
Unlabelled: what it measures is retrieval of edited copies (bench/copies.py), not classes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from PIL import Image

SIZE_SUFFIX = re.compile(r"[_-]?\d+x\d+$")
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry", "hubble_deep_field")


def debian_backgrounds() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(Path("/usr/share/backgrounds").rglob("*")):
        if path.suffix.lower() in SUFFIXES and path.is_file():
            # "Name.jpg", "Name_3840x2160.jpg": one picture at several sizes; keep the largest file
            key = path.parent.name + "-" + SIZE_SUFFIX.sub("", path.stem)
            if key not in found or path.stat().st_size > found[key].stat().st_size:
                found[key] = path
    for folder in sorted(Path("/usr/share/wallpapers").glob("*/contents/images")):
        files = [p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES]
        if files:  # the largest rendering of this wallpaper only
            found[f"plasma-{folder.parent.parent.name}"] = max(files, key=lambda p: p.stat().st_size)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-side", type=int, default=1024)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Image.Image] = {}
    for name, path in debian_backgrounds().items():
        try:
            images[name] = Image.open(path).convert("RGB")
        except OSError as exc:
            print(f"skipped {path}: {exc}")
    try:
        import skimage.data

        for name in SKIMAGE_PHOTOS:
            images[f"skimage-{name}"] = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
    except ImportError:
        print("scikit-image not installed: its sample photos are left out")
    seen: set[bytes] = set()
    kept = 0
    for name, img in sorted(images.items()):
        img.thumbnail((args.max_side, args.max_side), Image.Resampling.LANCZOS)
        key = np.asarray(img.resize((16, 16))).tobytes()
        if key in seen:  # the same picture shipped twice
            continue
        seen.add(key)
        img.save(args.out / f"{name}.jpg", quality=92)
        kept += 1
    print(f"{kept} photos in {args.out}")


if __name__ == "__main__":
    main()
