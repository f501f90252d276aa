"""Issue 6, section 5: two people on one dashboard at once. Two browser contexts (two sessions: separate
cookies and websockets) on one ``streamlit run`` upload different images at the same moment; each must see
its own result only. The models and their results are shared between sessions through st.cache_resource,
so a result keyed on the wrong thing would show one person the other's image.

Debian's chromium under Playwright, as in test_browser.py; skipped where it is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dashboard.browser import CHROMIUM, chromium, serve, settle

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed; make test "
                                                               "installs it with apt")
UPLOAD = '[data-testid="stFileUploaderDropzoneInput"]'
PICTURES = '[data-testid="stImage"] img'

#: file name -> (height, width): told apart by name and by the size of every picture drawn from it
IMAGES = {"wide-scene.png": (96, 224), "tall-scene.png": (240, 112)}


@pytest.mark.hardening(5, "two browser sessions uploading different images at once",
                       "each session shows only its own image's result")
def test_two_sessions_uploading_at_once_each_see_their_own_result(dashboard_runs, tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for name, (height, width) in IMAGES.items():
        files[name] = tmp_path / name
        Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(files[name])
    with serve(tmp_path, dashboard_runs) as url, chromium() as browser:
        contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in IMAGES]
        pages = [context.new_page() for context in contexts]
        for page in pages:
            page.goto(f"{url}/live")
            page.get_by_text("Live segmentation").first.wait_for(timeout=120_000)
            settle(page)
        # one upload right after the other: both sessions' scripts run, and segment, at the same time
        for page, name in zip(pages, IMAGES):
            page.locator(UPLOAD).set_input_files(str(files[name]))
        for page in pages:
            page.locator(PICTURES).first.wait_for(timeout=120_000)
            settle(page)
        for page, (name, (height, width)) in zip(pages, IMAGES.items()):
            other = next(n for n in IMAGES if n != name)
            assert page.get_by_role("heading", name=name).count() == 1, name
            assert page.get_by_text(other).count() == 0, (name, other)
            sizes = page.eval_on_selector_all(PICTURES, "images => images.map(i => [i.naturalHeight, i.naturalWidth])")
            assert len(sizes) >= 2 and all(tuple(size) == (height, width) for size in sizes), (name, sizes)
            assert page.get_by_text("instances ·").count() >= 2  # a caption per model
            assert page.locator('[data-testid="stException"]').count() == 0
        for context in contexts:
            context.close()
