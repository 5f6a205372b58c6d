"""`latent-search demo --data DIR` against the clock: to the first answered search, and to the swap
to the encoder the background run chose, with searches running throughout.

    uv run python -m bench.demo --source ../shared/data/flowers5.tar.gz \\
        --source ../shared/data/pacs_sketch.tar.gz --count 5000 --side 224 --out runs/demo-bench

The folder is made once: the sources' images resized to SIDE x SIDE JPEGs (quality 90) until COUNT.
The demo starts in a fresh work folder; the clock starts when its process does. Goals (issue 31):
the first search within 120 s on 2 cores, no failed search during the swap.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench.report import machine, table, today, write_section

FINAL = ("adapted", "kept-shipped", "failed")


def make_folder(sources: list[str], count: int, side: int, out: Path) -> Path:
    if out.exists() and sum(1 for _ in out.rglob("*.jpg")) >= count:
        return out
    shutil.rmtree(out, ignore_errors=True)
    n = 0
    for source in sources:
        with tarfile.open(source) as tar:
            for member in tar:
                if n >= count:
                    return out
                if not member.isfile() or not member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                    continue
                data = tar.extractfile(member)
                if data is None:
                    continue
                image = (
                    Image.open(io.BytesIO(data.read())).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
                )
                folder = out / Path(member.name).parent.name
                folder.mkdir(parents=True, exist_ok=True)
                image.save(folder / f"{n:05d}.jpg", quality=90)
                n += 1
    return out


def query_bytes(folder: Path) -> bytes:
    return next(folder.rglob("*.jpg")).read_bytes()


def run(folder: Path, work: Path, port: int, minutes: float | None, log: Path) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, "-m", "app.cli", "demo", "--data", str(folder), "--workdir", str(work), "--port", str(port)]
    if minutes:
        cmd += ["--minutes", f"{minutes:g}"]
    env = {**os.environ, "LATENT_SEARCH_API_KEY": "bench"}
    query = query_bytes(folder)
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    row: dict[str, Any] = {"command": " ".join(["latent-search", *cmd[3:]]), "date": today()}
    try:
        with httpx.Client() as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"demo exited with {proc.returncode}; see {log}")
                try:
                    r = client.post(f"{base}/search", files={"image": ("q.jpg", query, "image/jpeg")}, timeout=30)
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            row["first_search_s"] = round(time.perf_counter() - started, 1)
            first = client.get(f"{base}/encoder", timeout=30).json()
            row["first_encoder"] = f"{first['name']} ({first['image_size']} px, {first['runtime']})"
            row["first_version"] = client.get(f"{base}/index", timeout=30).json()["version"]
        stop, codes, latencies = threading.Event(), [], []

        def searcher() -> None:
            with httpx.Client() as c:
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        code = c.post(f"{base}/search", files={"image": ("q.jpg", query, "image/jpeg")},
                                      timeout=60).status_code  # fmt: skip
                    except httpx.HTTPError:
                        code = 0
                    codes.append(code)
                    latencies.append(time.perf_counter() - t)
                    time.sleep(0.5)

        thread = threading.Thread(target=searcher, daemon=True)
        thread.start()
        info = first
        while info["adaptation"] and info["adaptation"]["state"] not in FINAL:
            time.sleep(5)
            info = httpx.get(f"{base}/encoder", timeout=60).json()
        row["final_s"] = round(time.perf_counter() - started, 1)
        stop.set()
        thread.join(120)
        row["final_state"] = info["adaptation"]["state"] if info["adaptation"] else "none"
        row["final_message"] = info["adaptation"]["message"] if info["adaptation"] else ""
        row["final_encoder"] = f"{info['name']} ({info['image_size']} px, {info['runtime']})"
        row["swapped"] = httpx.get(f"{base}/index", timeout=30).json()["version"] != row["first_version"]
        row["searches"] = len(codes)
        row["failed_searches"] = sum(1 for c in codes if c != 200)
        ordered = sorted(latencies)
        row["p50_ms"] = round(1000 * ordered[len(ordered) // 2], 1) if ordered else None
    finally:
        stop_group(proc)
    return row


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End a process started with start_new_session=True and everything it started (the demo's
    background training run too): SIGTERM, then SIGKILL after 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def report(row: dict[str, Any], images: int, side: int) -> str:
    first_ok = "yes" if row["first_search_s"] <= 120 else f"no (+{row['first_search_s'] - 120:.0f} s)"
    return "\n".join(
        [
            "## `demo --data DIR`: search first, adapt behind it (issue 31)",
            "",
            f"Measured {row['date']} on {machine()}: {images:,} images of {side} px, a fresh work folder,",
            "the clock from the demo process's start; a search every 0.5 s from the first answer on.",
            "",
            "```bash",
            "uv run python -m bench.demo --source ../shared/data/flowers5.tar.gz \\",
            f"    --source ../shared/data/pacs_sketch.tar.gz --count {images} --side {side} --out runs/demo-bench",
            "```",
            "",
            table(
                ["what", "measured"],
                [
                    ["first search answered (goal 120 s)", f"{row['first_search_s']:.0f} s: {first_ok}"],
                    ["served first", row["first_encoder"]],
                    ["adaptation finished and swapped (or said why not)", f"{row['final_s']:.0f} s"],
                    ["outcome", f"{row['final_state']}: {row['final_message']}"],
                    ["served after", f"{row['final_encoder']}; index version changed: {row['swapped']}"],
                    [
                        "searches during adaptation and swap",
                        f"{row['searches']}, failed {row['failed_searches']}, p50 {row['p50_ms']} ms",
                    ],
                ],
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", required=True, help="a .tar(.gz) of images (repeatable)")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--minutes", type=float, default=None, help="adaptation budget (default: the preset's)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo-bench"))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="write BENCHMARKS.md from OUT/demo.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = make_folder(args.source, args.count, args.side, args.out / "photos")
    images = sum(1 for _ in folder.rglob("*.jpg"))
    if args.report_only:
        row = json.loads((args.out / "demo.json").read_text())
    else:
        row = run(folder, args.out / "work", args.port, args.minutes, args.out / "demo.log")
        (args.out / "demo.json").write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    if not args.no_write:
        write_section("demo-search-first", report(row, images, args.side))


if __name__ == "__main__":
    main()
