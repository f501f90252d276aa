"""The dashboard end to end in a real browser: Debian's chromium driven by Playwright, headless, against
``streamlit run`` on localhost. Every page is visited, an image is uploaded and its overlay awaited, and no
page may show an exception.

The browser is /usr/bin/chromium, installed by ``make test`` through apt; nothing is downloaded. Set
SEGCORE_SCREENSHOTS=DIR to keep a screenshot of each page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
#: (url path, a text the page shows once it has run)
PAGES = [("", "runs"), ("leaderboard", "Leaderboard"), ("compare", "Compare two runs"),
         ("live", "Live segmentation"), ("browse", "Browse images"), ("training", "Training")]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed; make test "
                                                               "installs it with apt")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(dashboard_runs, tmp_path_factory):
    """``streamlit run dashboard/app.py`` on a free port, with the test runs in $SEGCORE_RUNS."""
    port = free_port()
    cwd = tmp_path_factory.mktemp("server")
    env = {**os.environ, "SEGCORE_RUNS": str(dashboard_runs), "PYTHONPATH": str(APP.parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"streamlit did not answer on {url}: {process.stdout.read().decode()[-2000:]}")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


def settle(page) -> None:
    """Wait until the script run is over: Streamlit shows its status widget while a script runs."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def screenshot(page, name: str) -> None:
    folder = os.environ.get("SEGCORE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_every_page_renders_without_an_exception(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for path, text in PAGES:
        page.goto(f"{server}/{path}")
        page.get_by_text(text, exact=False).first.wait_for(timeout=120_000)
        settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, path
        screenshot(page, path or "overview")
    page.close()


def test_upload_an_image_and_see_its_overlay(server, browser, tmp_path):
    image = tmp_path / "upload.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((128, 160, 3)) * 255).astype(np.uint8)).save(image)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/live")
    page.get_by_text("Live segmentation").first.wait_for(timeout=120_000)
    settle(page)
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
    page = browser.new_page()
    page.goto(f"{server}/live")
    page.get_by_text("Live segmentation").first.wait_for(timeout=120_000)
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
    page.get_by_text("cannot be read as an image").wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()

