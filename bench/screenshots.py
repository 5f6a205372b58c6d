"""Screenshots of the page's views for the README, from a real server and a real Chromium.

    uv run python -m bench.screenshots --encoder runs/default/encoder.pt --index indexes/default --out docs
    uv run python -m bench.screenshots --base http://127.0.0.1:8000 --out shots   # a server already up

Starts `latent-search serve` on a free port, opens the page in headless Chromium (Playwright,
/usr/bin/chromium) and writes docs/search-page.png, docs/browse-view.png (one label),
docs/map-view.png (hovering a point) and docs/duplicates-view.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {base} not ready after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, help="with --index: start `latent-search serve` on them")
    parser.add_argument("--index", type=Path)
    parser.add_argument("--base", help="a server already running instead (e.g. `latent-search demo`'s)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--threshold", type=float, default=0.99, help="cosine for the duplicates view")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    if args.base:
        base, server = args.base.rstrip("/"), None
    elif args.encoder and args.index:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "app.cli", "serve", "--encoder", str(args.encoder), "--index", str(args.index),
               "--port", str(port)]  # fmt: skip
        server = subprocess.Popen(cmd, env=os.environ.copy())
    else:
        parser.error("give --encoder and --index, or --base")
    try:
        wait_ready(base, 300)
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(base + "/")
            page.wait_for_function("document.querySelector('#label-filter').options.length > 1")
            first = httpx.get(f"{base}/images?limit=1").json()["images"][0]["id"]
            page.evaluate(f"searchById({first})")
            page.wait_for_selector(".tile img")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "search-page.png"), full_page=True)

            page.click("#tabs button[data-view=browse]")
            page.wait_for_function("document.querySelectorAll('#browse-grid .tile img').length >= 60")
            page.select_option("#browse-label", index=4)
            page.wait_for_function("document.querySelector('#browse-status').textContent.includes('shown')")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "browse-view.png"), full_page=False)

            page.click("#tabs button[data-view=map]")
            page.wait_for_function("window.latentMap.points.length > 0")
            point = page.evaluate("window.latentMap.points[Math.floor(window.latentMap.points.length / 3)]")
            x, y = page.evaluate(f"window.latentMap.screenOf({point['id']})")
            box = page.locator("#map-canvas").bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + x, box["y"] + y)
            page.wait_for_selector("#map-tip:not([hidden])")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.out / "map-view.png"), full_page=True)

            page.click("#tabs button[data-view=duplicates]")
            page.wait_for_selector(".group .tile img", timeout=300_000)
            page.fill("#dup-threshold", str(args.threshold))
            page.click("#dup-find")
            page.wait_for_function("document.querySelector('#dup-status').textContent.includes('groups among')"
                                   " && document.querySelectorAll('.group').length > 0", timeout=300_000)  # fmt: skip
            page.wait_for_timeout(2000)
            page.screenshot(path=str(args.out / "duplicates-view.png"), full_page=False)
            browser.close()
        print(f"wrote {args.out}/search-page.png, browse-view.png, map-view.png, duplicates-view.png")
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
