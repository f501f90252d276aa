"""The dashboard end to end in a real browser: Debian's chromium driven by Playwright, headless, against
``streamlit run`` on localhost. Every page is visited, an image is uploaded and its overlay awaited, and no
page may show an exception.

The browser is /usr/bin/chromium, installed by ``make test`` through apt; nothing is downloaded. Set
SEGCORE_SCREENSHOTS=DIR to keep a screenshot of each page.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dashboard.browser import CHROMIUM, chromium, open_page, serve, settle

#: (url path, a text the page shows once it has run)
PAGES = [("", "runs"), ("leaderboard", "Leaderboard"), ("compare", "Compare two runs"),
         ("live", "Live segmentation"), ("browse", "Browse images"), ("training", "Training")]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed; make test "
                                                               "installs it with apt")


@pytest.fixture(scope="module")
def server(dashboard_runs, tmp_path_factory):
    """``streamlit run dashboard/app.py`` on a free port, with the test runs in $SEGCORE_RUNS."""
    with serve(tmp_path_factory.mktemp("server"), dashboard_runs) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def screenshot(page, name: str) -> None:
    folder = os.environ.get("SEGCORE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_every_page_renders_without_an_exception(server, browser):
    for path, text in PAGES:
        page = open_page(browser, f"{server}/{path}", text)
        assert page.locator('[data-testid="stException"]').count() == 0, path
        screenshot(page, path or "overview")
        page.close()


def test_upload_an_image_and_see_its_overlay(server, browser, tmp_path):
    image = tmp_path / "upload.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((128, 160, 3)) * 255).astype(np.uint8)).save(image)
    page = open_page(browser, f"{server}/live", "Live segmentation")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    overlay = page.locator('[data-testid="stImage"] img').first
    overlay.wait_for(timeout=120_000)
    settle(page)
    assert page.get_by_text("upload.png").count() >= 1
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "live-upload")
    page.close()


def test_a_file_that_is_not_an_image_gets_a_message(server, browser, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    page = open_page(browser, f"{server}/live", "Live segmentation")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
    page.get_by_text("cannot be read as an image").wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()

