"""Drive the web page in a real headless Chromium: upload, see tiles, click one, new search."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)"),
]


def test_upload_see_results_click_to_search_again(live_server: str, image_folder: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    query = sorted(image_folder.rglob("*.png"))[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(live_server + "/")
        page.wait_for_function("document.getElementById('index-info').textContent.includes('54 images')")
        page.set_input_files("#file", str(query))
        page.wait_for_selector(".tile img")
        tiles = page.locator(".tile")
        assert tiles.count() == 20
        assert "results" in page.locator("#status").inner_text()
        scores = [float(t.locator(".meta span").nth(1).inner_text()) for t in tiles.all()]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0.99
        # The first result's thumbnail really loaded from /images/{id}.
        assert page.eval_on_selector(".tile img", "img => img.complete && img.naturalWidth > 0")
        second = tiles.nth(1)
        clicked_id = second.get_attribute("data-id")
        with page.expect_response(lambda r: f"/images/{clicked_id}/similar" in r.url) as response:
            second.click()
        assert response.value.status == 200
        page.wait_for_function(f"document.querySelector('#query img').src.endsWith('/images/{clicked_id}')")
        page.wait_for_selector(".tile img")
        new_ids = page.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.id)")
        assert clicked_id not in new_ids and len(new_ids) == 20
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
