"""Fashion-MNIST (Debian's `dataset-fashion-mnist`: the IDX files under
/usr/share/datasets/fashion-mnist) as a latent-search collection: a tar of PNGs laid out
train/<class>/... and test/<class>/... (70,000 grayscale 28x28 images, 10 classes).

    apt-get install dataset-fashion-mnist
    uv run python -m bench.fashion_mnist --out /tmp/fashion-mnist.tar
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
SOURCE = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    _, _, dtype, ndim = struct.unpack(">BBBB", data[:4])
    if dtype != 0x08:
        raise ValueError(f"{path}: not unsigned-byte IDX data")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def convert(source: Path, out: Path) -> int:
    n = 0
    with tarfile.open(out, "w") as tar:
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
            labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                buf = io.BytesIO()
                Image.fromarray(image, mode="L").save(buf, format="PNG")
                info = tarfile.TarInfo(f"fashion-mnist/{split}/{CLASSES[label]}/{i:05d}.png")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not (args.source / "train-images-idx3-ubyte.gz").exists():
        parser.error(f"no Fashion-MNIST IDX files in {args.source}; apt-get install dataset-fashion-mnist")
    print(f"wrote {convert(args.source, args.out)} images to {args.out}")


if __name__ == "__main__":
    main()
