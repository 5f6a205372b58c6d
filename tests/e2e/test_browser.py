"""Drive the web page in a real headless Chromium: upload, see tiles, click one, new search."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import run_server

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
        # The line under the title says which encoder serves (GET /encoder).
        page.wait_for_function("document.getElementById('encoder-info').textContent.startsWith('encoder: ')")
        assert "small_cnn, 32 px" in page.locator("#encoder-info").inner_text()
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


def test_map_hover_click_and_duplicates_view(live_server: str, tmp_path: Path) -> None:
    """Open the map, hover a dot (its image shows), click it (a search by that image runs);
    open the duplicates view (groups with thumbnails, or the count of none)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(live_server + "/")
        page.wait_for_function("document.getElementById('index-info').textContent.includes('54 images')")
        page.click("#tabs button[data-view=map]")
        page.wait_for_function("window.latentMap.points.length === 54")
        assert "54 images" in page.locator("#map-info").inner_text()
        legend = page.locator("#map-legend span").all_inner_texts()
        assert len(legend) == 3  # the three labels of the fixture collection, one colour each
        point = page.evaluate("window.latentMap.points[7]")
        x, y = page.evaluate(f"window.latentMap.screenOf({point['id']})")
        box = page.locator("#map-canvas").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_selector("#map-tip:not([hidden])")
        hovered = page.get_attribute("#map-tip", "data-id")
        page.wait_for_function("document.querySelector('#map-tip img').complete")
        assert page.eval_on_selector("#map-tip img", "img => img.naturalWidth > 0")
        with page.expect_response(lambda r: f"/images/{hovered}/similar" in r.url) as response:
            page.mouse.click(box["x"] + x, box["y"] + y)
        assert response.value.status == 200
        assert page.locator("#view-search").is_visible()
        page.wait_for_selector(".tile img")
        page.screenshot(path=str(tmp_path / "after-map-click.png"), full_page=True)

        page.click("#tabs button[data-view=duplicates]")
        page.wait_for_function("document.querySelector('#dup-status').textContent.includes('groups among 54 images')")
        page.fill("#dup-threshold", "0.5")
        page.click("#dup-find")
        page.wait_for_selector(".group .tile img")
        assert page.locator(".group").count() >= 1
        assert "near duplicates" in page.locator(".group h3").first.inner_text()
        page.click("#tabs button[data-view=browse]")
        page.wait_for_function("document.querySelectorAll('#browse-grid .tile').length === 54")
        page.select_option("#browse-label", index=1)
        page.wait_for_function("document.querySelectorAll('#browse-grid .tile').length === 18")
        browser.close()


def test_a_duplicate_decision_made_on_the_page_is_kept(tiny_encoder: Path, index_copy: Path) -> None:
    """Mark a group "keep all" on the page: it shows as reviewed, the API has the decision, and
    "hide reviewed" takes it off the list."""
    import httpx
    from playwright.sync_api import sync_playwright

    with run_server(tiny_encoder, index_copy) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('index-info').textContent.includes('54 images')")
        page.click("#tabs button[data-view=duplicates]")
        page.wait_for_function("document.querySelector('#dup-status').textContent.includes('groups among 54 images')")
        page.fill("#dup-threshold", "0.9995")
        page.click("#dup-find")
        page.wait_for_selector(".group .tile img")
        groups = page.locator(".group").count()
        first = page.locator(".group").first
        assert first.get_attribute("data-status") == "new"
        assert "suggested #" in first.locator(".state").inner_text()
        ids = [int(i) for i in first.locator(".tile").evaluate_all("ts => ts.map(t => t.dataset.id)")]
        first.locator("button.keep-all").click()
        page.wait_for_function("document.querySelector('.group')?.dataset.status === 'reviewed'")  # the list is redrawn
        assert "reviewed: keep all" in page.locator(".group").first.locator(".state").inner_text()
        reviews = httpx.get(f"{base}/duplicates/reviews", timeout=10).json()["reviews"]
        assert len(reviews) == 1 and sorted(reviews[0]["ids"]) == sorted(ids)
        page.check("#dup-hide-reviewed")
        page.wait_for_function(f"document.querySelectorAll('.group').length === {groups - 1}")
        browser.close()
