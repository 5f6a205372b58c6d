"""Folder sync against a full rebuild: the cost of `index sync` follows what changed.

    uv run python -m bench.sync --data ../shared/data/cifar10-jpg.tar.gz [--count 10000]

Writes the first COUNT images of the archive into a folder, builds an index of it (timed: the
full rebuild), then for 0, 100 and 1,000 changed files (half new files, a fifth deleted, a
fifth edited in place, a tenth renamed) times `plan_sync` + `apply_sync` as `index sync` runs
them, with the encoder given (default: an untrained cpu-small encoder; speed does not depend on
the weights). Writes the "sync" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.report import machine, table, today, write_section
from bench.serve import untrained_encoder
from index.build import build_index
from index.folder import STATE_FILE, FileStates
from index.images import ImageStore
from index.store import load
from index.sync import apply_sync, plan_sync
from model.embedding.runtime import load_runtime


def make_folder(data: str, count: int, out: Path) -> list[Path]:
    shutil.rmtree(out, ignore_errors=True)
    written: list[Path] = []
    with tarfile.open(data) as tar:
        for member in tar:
            if len(written) == count:
                break
            if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                fh = tar.extractfile(member)
                if fh is not None:
                    path = out / member.name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(fh.read())
                    written.append(path)
    return written


def change(files: list[Path], n: int, round_: int, folder: Path) -> None:
    """n changes: n/2 new files, n/5 deleted, n/5 edited in place, n/10 renamed."""
    rng = np.random.default_rng(round_)
    alive = [f for f in files if f.exists()]
    picked = [alive[i] for i in rng.choice(len(alive), n // 2, replace=False)]
    deleted, edited, renamed = picked[: n // 5], picked[n // 5 : 2 * n // 5], picked[2 * n // 5 :]
    for path in deleted:
        path.unlink()
    for path in edited:
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path, "JPEG", quality=90)
    for path in renamed:
        path.rename(path.with_name(f"renamed-{round_}-{path.name}"))
    (folder / "new").mkdir(exist_ok=True)
    for i in range(n // 2):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        (folder / "new" / f"{round_}-{i}.png").write_bytes(buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--encoder", help="encoder.pt (default: an untrained cpu-small)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-sync"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    encoder_path = Path(args.encoder) if args.encoder else untrained_encoder("cpu-small", work / "cpu-small.pt")
    encoder = load_runtime(encoder_path, "auto", "cpu")
    folder = work / "photos"
    files = make_folder(args.data, args.count, folder)
    root = work / "index"
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    build_index(encoder, folder, root, progress=False)
    rebuild = time.perf_counter() - t0
    rows = [["full build (index build)", f"{len(files):,}", "", f"{rebuild:.1f}", "1.00"]]
    print(rows[-1], flush=True)
    for round_, n in enumerate((0, 100, 1000)):
        if n:
            change(files, n, round_, folder)
        index = load(root, encoder_checksum=encoder.checksum, writable=True)
        states = FileStates(root / STATE_FILE)
        t0 = time.perf_counter()
        plan = plan_sync(index, folder, states)
        planned = time.perf_counter() - t0
        report = apply_sync(index, plan, folder, encoder, states, ImageStore(root / "images"))
        seconds = time.perf_counter() - t0
        states.close()
        index.close()
        s = report.summary
        what = f"+{s['added']} -{s['removed']} ({s['changed']} edited) moved {s['moved']}, {s['hashed']} files read"
        rows.append([f"sync, {n:,} files changed", f"{s['files']:,}", what, f"{seconds:.1f} (plan {planned:.1f})",
                     f"{seconds / rebuild:.3f}"])  # fmt: skip
        print(rows[-1], flush=True)
    body = (
        f"## Folder sync ({today()})\n\n`uv run python -m bench.sync --data {args.data} --count {args.count}` on "
        f"{machine()}; encoder {encoder.arch} at {encoder.image_size} px ({encoder.runtime}). The build records "
        "each file's size and mtime with its hash, so a sync reads only files that are new or whose size or mtime "
        "changed; its fixed part is the walk of the folder and the catalog (plan). Changes: half new files, a fifth "
        "deleted, a fifth edited in place (re-embedded), a tenth renamed (kept under their id).\n\n"
        + table(["run", "files", "changes", "seconds", "of the full build"], rows)
    )
    print(body)
    if not args.no_write:
        write_section("sync", body)


if __name__ == "__main__":
    main()
