"""Planted copies: does the default duplicate threshold find the copies people make, without
joining distinct photos?

    uv run python -m bench.duplicates --photos ../shared/data/flowers5.tar.gz \\
        --others ../shared/data/cifar10-jpg.tar.gz [--encoder shipped | PATH ...]

A collection of 300 test photos of the first archive plus 60 images of the second, and 45
planted copies of 15 of the photos: re-saved at JPEG quality 40, halved in size, cropped to
92 % of the area. For each encoder (default: EfficientNet-Lite0 as it ships, at 224 and 128 px)
the index is built, the service's threshold is measured (index.calibrate) and GET /duplicates'
grouping (index.duplicates) is run at it and at fixed thresholds. Counted: planted pairs
(original, copy) in one group, of 45; pairs of distinct images (neither a planted copy of the
other) in one group. Writes the "duplicates-planted" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import tarfile
from pathlib import Path

from PIL import Image

from bench.report import machine, table, today, write_section
from index.build import build_index
from index.calibrate import calibrate, pixel_check, stored_thumbnails
from index.duplicates import find_duplicates
from index.images import ImageStore
from index.store import load
from model.embedding.onnx_export import export_onnx
from model.embedding.pretrained import export_as_is
from model.embedding.runtime import load_runtime

PHOTOS, OTHERS, PLANTED = 300, 60, 15
HEADER = ["encoder", "threshold", "planted pairs grouped", "distinct pairs joined", "groups"]


def read(archive: str, n: int, split: str | None) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if len(out) == n:
                break
            if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                if split is not None and f"/{split}/" not in f"/{member.name}":
                    continue
                fh = tar.extractfile(member)
                if fh is not None:
                    out.append((member.name, fh.read()))
    return out


def copies_of(data: bytes) -> dict[str, bytes]:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    out = {}
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=40)
    out["q40"] = buf.getvalue()
    buf = io.BytesIO()
    img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=90)
    out["half"] = buf.getvalue()
    side = 0.92**0.5
    cw, ch = round(w * side), round(h * side)
    buf = io.BytesIO()
    img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).save(buf, "JPEG", quality=90)
    out["crop92"] = buf.getvalue()
    return out


def make_collection(photos: str, others: str, folder: Path) -> set[frozenset[str]]:
    """Write the collection; the planted (original, copy) pairs by uri."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pairs: set[frozenset[str]] = set()
    for n, (name, data) in enumerate(read(photos, PHOTOS, "test")):
        uri = f"photos/{n:03d}{Path(name).suffix}"
        (folder / uri).parent.mkdir(exist_ok=True)
        (folder / uri).write_bytes(data)
        if n % (PHOTOS // PLANTED) == 0:
            for kind, copy in copies_of(data).items():
                copy_uri = f"copies/{n:03d}-{kind}.jpg"
                (folder / copy_uri).parent.mkdir(exist_ok=True)
                (folder / copy_uri).write_bytes(copy)
                pairs.add(frozenset((uri, copy_uri)))
    for n, (name, data) in enumerate(read(others, OTHERS, "test")):
        (folder / "others").mkdir(exist_ok=True)
        (folder / "others" / f"{n:03d}{Path(name).suffix}").write_bytes(data)
    return pairs


def score(groups: list[list[str]], pairs: set[frozenset[str]]) -> tuple[int, int]:
    """(planted pairs grouped, pairs of distinct images grouped)."""
    found = wrong = 0
    originals = {u: next(iter(p - {u})) for p in pairs for u in p if u.startswith("copies/")}
    for members in groups:
        for a, b in itertools.combinations(members, 2):
            if frozenset((a, b)) in pairs:
                found += 1
            elif originals.get(a, a) != originals.get(b, b):  # not two copies of one original either
                wrong += 1
    return found, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True)
    parser.add_argument("--others", required=True)
    parser.add_argument("--encoder", action="append", help="encoder.pt (default: the shipped net at 224 and 128 px)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-duplicates"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    work: Path = args.workdir
    folder = work / "collection"
    pairs = make_collection(args.photos, args.others, folder)
    encoders = [Path(e) for e in args.encoder or []]
    if not encoders:
        for side in (224, 128):
            path = work / f"lite0-{side}" / "encoder.pt"
            if not path.with_suffix(".onnx").exists():
                export_as_is("efficientnet_lite0", path, side)
                export_onnx(path)
            encoders.append(path)
    rows = []
    for path in encoders:
        encoder = load_runtime(path, "auto", "cpu")
        root = work / f"index-{path.parent.name}"
        shutil.rmtree(root, ignore_errors=True)
        build_index(encoder, folder, root, progress=False)
        index = load(root)
        found = calibrate(encoder, index, ImageStore(root / "images"))
        check = pixel_check(found, stored_thumbnails(index, ImageStore(root / "images")))
        for threshold in (found.threshold, 0.95, 0.9, 0.85):
            default = threshold == found.threshold
            report = find_duplicates(index, threshold, check if default else None)
            rows_by_id = index.rows([m.id for g in report.groups for m in g.members])
            groups = [[rows_by_id[m.id].uri for m in g.members] for g in report.groups]
            hits, wrong = score(groups, pairs)
            label = (
                f"default: {threshold:.3f}, and from {found.candidate:.3f} when alike in pixels (>= {found.pixel})"
                if default else f"{threshold:.2f}"
            )  # fmt: skip
            rows.append([f"{encoder.arch} {encoder.image_size} px", label, f"{hits} of {len(pairs)}", str(wrong),
                         str(len(report.groups))])  # fmt: skip
            print(rows[-1], flush=True)
        print(f"  calibration: {found}", flush=True)
        index.close()
    name = Path(args.photos).name.split(".")[0] + "".join(f"-{Path(e).parent.name}" for e in args.encoder or [])
    body = (
        f"## Planted copies and the default duplicate groups: {name} ({today()})\n\n`uv run python -m bench.duplicates "
        f"--photos {args.photos} --others {args.others}` on {machine()}: {PHOTOS} test photos of the first archive, "
        f"{OTHERS} images of the second and {len(pairs)} planted copies of {PLANTED} photos (JPEG quality 40, half "
        "size, 92 % crop). default = what GET /duplicates does without a threshold: the measured threshold, and "
        "below it, from the measured candidate cosine, pairs whose thumbnails correlate at least the measured "
        "level (index.calibrate, index.likeness). planted = (original, copy) pairs in one group; distinct joined = "
        "pairs in one group that are neither (a collection's own near duplicates count here too).\n\n"
        + table(HEADER, rows)
    )
    print(body)
    if not args.no_write:
        write_section(f"duplicates-planted-{name}", body)


if __name__ == "__main__":
    main()
