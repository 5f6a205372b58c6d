"""Serving benchmark on real uploads: phone photos and screenshots against the photo encoder.

    uv run python -m bench.serve_uploads --photos ../shared/data/flowers5.tar.gz \\
        --photos ../shared/data/cifar10-jpg.tar.gz

The collection: the first 5,000 photos of the archives given (squared to 224 px, as
bench.demo makes its folder), indexed with the encoder a photo collection gets by default, the
shipped EfficientNet-Lite0 at 224 px, served through ONNX Runtime. The uploads:
  - phone: 12-MP JPEGs (4000 x 3000, quality 90) made from the collection's test photos,
    upscaled, with sensor-like noise (sigma 6) so that they weigh what a phone's do (2-5 MB);
    every other one stored on its side with EXIF orientation 6, as a phone held upright writes it;
  - screenshot: 2560 x 1600 PNGs, a window with bars, text and a photo in it.
For each kind, in-process and in the same run:
  - pipeline: what the service does for one upload, without HTTP: header check, decode of its
    query views (JPEG draft mode: libjpeg downscales while decoding), embedding, search (median);
  - decode q/s: those decodes on a pool of one thread per core;
  - encoder q/s: the encoder on batches of 8 queries (their views together) with the service's threads;
  - HTTP q/s: a bare FastAPI endpoint reading the same uploads at concurrency 16;
  - limit = 1 / (1 / decode + 1 / encoder + 1 / HTTP): the three share the same cores.
Then `latent-search serve` under POST /search load at concurrency 1, 4 and 16 from keep-alive
client threads (another process, same cores). Goals (issue 34): p50 at concurrency 1 <= 1.3 x
the pipeline, q/s at 16 >= 0.7 x the limit. Writes the "serve-uploads" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from app.config import Settings
from bench.demo import make_folder
from bench.report import machine, table, today, write_section
from bench.serve import free_port, load_test, multipart, sample_queries, serve, stopped_after, untrained_encoder
from bench.serve import http_limit as bare_http_limit
from index.build import build_index
from index.store import load
from index.versions import IndexNotFoundError, read_manifest
from model.common.hardware import usable_cores
from model.embedding.images import SUPPORTED_FORMATS, UPLOAD_MAX_PIXELS, open_checked
from model.embedding.onnx_export import export_onnx
from model.embedding.pretrained import export_as_is
from model.embedding.query_views import QUERY_VIEWS, decode_views, search_views
from model.embedding.runtime import EncoderRuntime, load_runtime

PHONE = (4000, 3000)
SCREEN = (2560, 1600)
ORIENTATION = 0x0112


def test_photos(sources: list[str], n: int) -> list[Image.Image]:
    """n test-split photos of the archives, spread over their folders (classes)."""
    by_folder: dict[str, list[bytes]] = {}
    for source in sources[:1]:  # the first archive: the collection's real photos
        with tarfile.open(source) as tar:
            for member in tar:
                if member.isfile() and "/test/" in f"/{member.name}" and member.name.lower().endswith(".jpg"):
                    data = tar.extractfile(member)
                    if data is not None:
                        by_folder.setdefault(Path(member.name).parent.name, []).append(data.read())
    picked: list[bytes] = []
    while len(picked) < n and any(by_folder.values()):
        for files in by_folder.values():
            if files and len(picked) < n:
                picked.append(files.pop(0))
    return [Image.open(io.BytesIO(b)).convert("RGB") for b in picked]


def phone_jpeg(photo: Image.Image, seed: int, on_its_side: bool) -> bytes:
    big = photo.resize(PHONE, Image.Resampling.BICUBIC)
    noisy = np.asarray(big, np.float32) + np.random.default_rng(seed).normal(0, 6, (PHONE[1], PHONE[0], 3))
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    if on_its_side:  # stored rotated; orientation 6 says "turn 90 degrees clockwise to view"
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif[ORIENTATION] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def screenshot_png(photo: Image.Image, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", SCREEN, (236, 238, 242))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, SCREEN[0], 72), fill=(40, 44, 52))
    draw.rectangle((0, 72, 360, SCREEN[1]), fill=(250, 250, 252))
    for line in range(40):
        y = 110 + 34 * line
        draw.text((24, y), f"item {line}: " + "x" * int(rng.integers(8, 28)), fill=(60, 60, 60))
        draw.text((1700, y), "lorem ipsum dolor sit amet " * 2, fill=(90, 90, 90))
    img.paste(photo.resize((1200, 900), Image.Resampling.BICUBIC), (420, 140))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def uploads(sources: list[str], work: Path) -> dict[str, list[bytes]]:
    """{kind: files}, made once and kept in `work`."""
    folder = work / "uploads"
    if not folder.exists():
        photos = test_photos(sources, 16)
        folder.mkdir(parents=True)
        for i, photo in enumerate(photos[:12]):
            (folder / f"phone-{i:02d}.jpg").write_bytes(phone_jpeg(photo, i, on_its_side=i % 2 == 1))
        for i, photo in enumerate(photos[12:16]):
            (folder / f"screenshot-{i:02d}.png").write_bytes(screenshot_png(photo, i))
    kinds: dict[str, list[bytes]] = {}
    for path in sorted(folder.iterdir()):
        kinds.setdefault(path.stem.split("-")[0], []).append(path.read_bytes())
    return kinds


def photo_encoder(work: Path) -> Path:
    path = work / "lite0-224" / "encoder.pt"
    if not path.with_suffix(".onnx").exists():
        export_as_is("efficientnet_lite0", path, 224)
        export_onnx(path)
    return path


def fresh_index(encoder: Path, data: str, index_dir: Path) -> Path:
    """The index of `data` built with `encoder`, reused when one with that encoder is there."""
    checksum = load_runtime(encoder, "onnx", "cpu").checksum
    try:
        if read_manifest(index_dir)["encoder"]["sha256"] == checksum:
            return index_dir
    except IndexNotFoundError:
        pass
    build_index(load_runtime(encoder, "onnx", "cpu"), data, index_dir, progress=False)
    return index_dir


def views_of(data: bytes, size: int) -> np.ndarray:
    return decode_views(open_checked(data, UPLOAD_MAX_PIXELS, SUPPORTED_FORMATS), size, QUERY_VIEWS)


def rate(run: object, items: list[bytes], seconds: float = 6.0) -> float:
    """Items per second of `run(items)`, repeated for about `seconds` (first pass not counted)."""
    assert callable(run)
    run(items)
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        run(items)
        done += len(items)
    return done / (time.perf_counter() - t0)


def in_process(
    encoder: EncoderRuntime, index_dir: Path, files: list[bytes], reps: int, rates: bool = True
) -> dict[str, float]:
    """The pipeline's median ms for one upload, and (`rates`) the decode and encoder rates in queries/s."""
    index = load(index_dir, encoder.checksum, store_settings=Settings().store_settings)  # the service's FAISS threads
    size = encoder.image_size
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        views = views_of(files[i % len(files)], size)
        vectors = encoder.embed_pixels(views)
        search_views(lambda v, n: index.search(v, n), [vectors], 10)
        times.append(time.perf_counter() - t0)
    pipeline_ms = 1000 * statistics.median(times[2:])
    if not rates:
        index.close()
        return {"pipeline_ms": pipeline_ms}
    with ThreadPoolExecutor(usable_cores()) as pool:
        decode_qps = rate(lambda items: list(pool.map(lambda d: views_of(d, size), items)), files)
    batch = np.concatenate([views_of(d, size) for d in (files * 8)[:8]])
    encoder_qps = rate(lambda items: encoder.embed_pixels(batch), [b""] * 8)
    index.close()
    return {"pipeline_ms": pipeline_ms, "decode": decode_qps, "encoder": encoder_qps}


def measure(
    kind: str, files: list[bytes], encoder_path: Path, index_dir: Path, requests: int, seconds: float
) -> list[list[str]]:
    """The table rows of one kind of upload: its limits in-process, then the server under load."""
    encoder = load_runtime(encoder_path, "onnx", "cpu", threads=usable_cores())
    bodies = [multipart(d) for d in files]
    mb = statistics.mean(len(d) for d in files) / 1e6
    rates = in_process(encoder, index_dir, files, reps=4)
    http = bare_http_limit(bodies, requests, seconds)
    limit = 1 / (1 / rates["decode"] + 1 / rates["encoder"] + 1 / http)
    print(f"{kind}: {mb:.2f} MB, {rates}, HTTP {http:.0f} q/s, limit {limit:.1f} q/s", flush=True)
    rows = []
    port = free_port()
    with stopped_after(serve(encoder_path, index_dir, port, "onnx")):
        load_test(port, bodies, 4, 16, 20)  # warm-up
        for c in (1, 4, 16):
            if c == 1:  # the pipeline's median next to the concurrency-1 level, before and after it
                before = in_process(encoder, index_dir, files, reps=30, rates=False)["pipeline_ms"]
            r = load_test(port, bodies, c, requests, seconds)
            if c == 1:
                after = in_process(encoder, index_dir, files, reps=30, rates=False)["pipeline_ms"]
                pipeline = (before + after) / 2
            print(f"  c={c}: {r}", flush=True)
            rows.append(
                [
                    kind,
                    f"{len(files)} x {1000 * mb:,.0f} kB",
                    f"{encoder.arch} {encoder.image_size} px",
                    f"{pipeline:.1f} ({before:.1f}, {after:.1f})" if c == 1 else "",
                    f"{rates['decode']:.0f}",
                    f"{rates['encoder']:.0f}",
                    f"{http:.0f}",
                    f"{limit:.1f}",
                    str(c),
                    f"{r['n']:.0f}",
                    f"{r['errors']:.0f}",
                    f"{r['qps']:.1f}",
                    f"{r['p50']:.1f}",
                    f"{r['p99']:.1f}",
                    f"{r['p50'] / pipeline:.2f}" if c == 1 else "",
                    f"{r['qps'] / limit:.2f}" if c == 16 else "",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", action="append", required=True, help="labelled photo archives (train/ test/)")
    parser.add_argument("--count", type=int, default=5000, help="photos in the collection")
    parser.add_argument("--small", help="also the small-image rows: this archive (CIFAR-10) against cpu-small")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-uploads"))
    parser.add_argument("--requests", type=int, default=200, help="most requests per concurrency level")
    parser.add_argument("--seconds", type=float, default=30.0, help="most seconds per concurrency level")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    encoder_path = photo_encoder(work)
    folder = make_folder(args.photos, args.count, 224, work / "photos")
    index_dir = fresh_index(encoder_path, str(folder), work / "index")
    count = read_manifest(index_dir)["count"]
    rows = []
    for kind, files in uploads(args.photos, work).items():
        rows += measure(kind, files, encoder_path, index_dir, args.requests, args.seconds)
    small = ""
    if args.small:
        small_encoder = untrained_encoder("cpu-small", work / "cpu-small-untrained.pt")
        small_index = fresh_index(small_encoder, args.small, work / "index-small")
        files = sample_queries(args.small, 64)
        rows += measure("small JPEG", files, small_encoder, small_index, 4 * args.requests, args.seconds)
        small = (
            f"; small JPEG: 64 test JPEGs of {args.small} against an untrained cpu-small encoder (speed does not "
            f"depend on the weights) and an index of its {read_manifest(small_index)['count']:,} images"
        )
    body = (
        f"## Serving real uploads ({today()})\n\n`uv run python -m bench.serve_uploads "
        + " ".join(f"--photos {p}" for p in args.photos)
        + (f" --small {args.small}" if args.small else "")
        + f"` on {machine()}.\nPhoto rows: an index of {count:,} photos, EfficientNet-Lite0 as it ships at 224 px "
        "through ONNX Runtime; phone = 12-MP JPEGs (4000 x 3000, quality 90, half stored on their side with EXIF "
        f"orientation 6), screenshot = 2560 x 1600 PNGs{small}. Each upload is searched as 4 query views. "
        "pipeline = the service's work for one upload in-process, without HTTP (median ms, measured just before "
        "and just after the concurrency-1 level, in brackets); decode / encoder / HTTP = each stage's queries/s "
        "alone (decode on one thread a core, the encoder on batches of 8 queries, HTTP = a bare FastAPI endpoint "
        "reading the same uploads at concurrency 16); limit = 1 / (1 / decode + 1 / encoder + 1 / HTTP), the "
        "three sharing the same cores. Goals (issue 34): p50 at concurrency 1 <= 1.3 x pipeline; q/s at 16 >= "
        "0.7 x limit.\n\n"
        + table(
            [
                "uploads",
                "files",
                "encoder",
                "pipeline ms",
                "decode q/s",
                "encoder q/s",
                "HTTP q/s",
                "limit q/s",
                "concurrency",
                "requests",
                "errors",
                "q/s",
                "p50 ms",
                "p99 ms",
                "p50 / pipeline",
                "q/s / limit",
            ],
            rows,
        )
    )
    print(body)
    if not args.no_write:
        write_section("serve-uploads", body)


if __name__ == "__main__":
    main()
