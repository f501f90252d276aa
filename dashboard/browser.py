"""The dashboard in a real browser: ``streamlit run`` on a free local port, and Debian's chromium driven by
Playwright, headless. Used by the browser test, the dashboard benchmark and the README's screenshots.

Nothing is downloaded: the browser is /usr/bin/chromium, which ``make test`` installs through apt.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
APP = Path(__file__).with_name("app.py")
ROOT = APP.parents[1]
#: The page's script is running while Streamlit shows its status widget.
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(cwd: str | Path, runs: str | Path | None = None, *, timeout_s: float = 90) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` in ``cwd`` (where runs/ and data/zoo/ are looked for), with
    ``runs`` in $SEGCORE_RUNS; yields its URL once it answers, and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if runs is not None:
        env["SEGCORE_RUNS"] = str(runs)
    # a file, not a pipe: nobody reads the output while the server runs, and a full pipe would block it
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.headless",
         "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                said = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"streamlit did not answer on {url}: {said}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """Debian's chromium under Playwright, headless: yields a ``playwright.sync_api.Browser``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def settle(page, timeout_ms: int = 120_000) -> None:
    """Wait until the page's script run is over. Streamlit shows its status widget only 500 ms into a run,
    so its absence means something only after that."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(700)
    page.wait_for_function(IDLE, timeout=timeout_ms)


def open_page(browser, url: str, text: str, *, width: int = 1400, height: int = 1000):
    """A new page at ``url``, once it shows ``text`` and its script has run."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.get_by_text(text, exact=False).first.wait_for(timeout=120_000)
    settle(page)
    return page
