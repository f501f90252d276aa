"""Dashboard speed, measured in one run:

1. Leaderboard: how long the leaderboard page takes to run with 30 evaluated runs, through Streamlit's
   AppTest (the whole script: sidebar, table, six charts), cold (caches cleared) and warm. Target: < 2 s.
2. Live segmentation in a real browser: Debian's chromium driven by Playwright against ``streamlit run``;
   the time from handing a 256×256 PNG to the uploader until its overlay is drawn and the script has
   finished, with the default Mask R-CNN. The first upload also loads the model; the median is over the
   next ones. Target: < 1 s.

    .venv/bin/python bench/dashboard_speed.py [--uploads 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"


def segcore(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "segcore", *arguments], cwd=ROOT, check=True, capture_output=True)


def make_runs(folder: Path) -> tuple[Path, Path]:
    """A tiny dataset, the default Mask R-CNN trained 2 iterations and evaluated on val, and 30 copies of
    its manifest and eval folder (names and scores differing) as a runs folder for the leaderboard."""
    data = folder / "shapes"
    segcore("data", "synth", "--out", str(data), "--n-train", "8", "--n-val", "8", "--n-test", "2")
    model = folder / "model" / "maskrcnn"
    segcore("train", "--model", "maskrcnn", "--data", str(data), "--out", str(model), "--max-iters", "2",
            "--batch-size", "2", "--val-split", "none", "--no-progress")
    segcore("eval", str(model), "--data", str(data), "--split", "val", "--no-progress")
    many = folder / "many"
    rng = np.random.default_rng(0)
    for i in range(30):
        run = many / f"run{i:02d}"
        (run / "evals").mkdir(parents=True)
        manifest = json.loads((model / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**manifest, "name": f"run{i:02d}"}))
        shutil.copytree(model / "evals" / "shapes-val", run / "evals" / "shapes-val")
        metrics_file = run / "evals" / "shapes-val" / "metrics.json"
        metrics = json.loads(metrics_file.read_text())
        metrics["segm"]["AP"] = float(rng.random())
        metrics["speed"]["total_ms_p50"] = float(rng.random() * 100)
        metrics_file.write_text(json.dumps(metrics))
    return many, model.parent


def leaderboard_seconds(runs_folder: Path) -> tuple[float, float]:
    """Seconds of the leaderboard page's script, cold then warm."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["SEGCORE_RUNS"] = str(runs_folder)
    os.chdir(runs_folder.parent)  # away from the repository's runs/ and data/zoo/: only the 30 runs are found
    app = AppTest.from_file(str(APP), default_timeout=300).run()
    st.cache_data.clear()
    app.switch_page("app_pages/leaderboard.py")
    start = time.perf_counter()
    app.run()
    cold = time.perf_counter() - start
    assert not app.exception and len(app.dataframe[0].value) == 30, [e.value for e in app.exception]
    start = time.perf_counter()
    app.run()
    return cold, time.perf_counter() - start


def upload_seconds(runs_folder: Path, folder: Path, uploads: int) -> list[tuple[float, float]]:
    """(seconds until the overlay is drawn, seconds until the script has finished) of each upload in
    Debian's chromium, one fresh page per upload."""
    from dashboard.browser import IDLE, chromium, open_page, serve

    rng = np.random.default_rng(1)
    seconds = []
    with serve(folder, runs_folder, timeout_s=90) as url, chromium() as browser:
        for i in range(uploads):
            image = folder / f"upload{i}.png"
            Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8)).save(image)
            page = open_page(browser, f"{url}/live", "Live segmentation")
            page.wait_for_timeout(1000)  # a user looks at the page before choosing a file: its first run is over
            start = time.perf_counter()
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
            page.locator('[data-testid="stImage"] img').first.wait_for(timeout=300_000)
            shown = time.perf_counter() - start
            page.wait_for_function(IDLE, timeout=300_000)
            seconds.append((shown, time.perf_counter() - start))
            page.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        many, model_runs = make_runs(folder)
        cold, warm = leaderboard_seconds(many)
        print(f"leaderboard page with 30 runs (AppTest, whole script): cold {cold:.2f} s, warm {warm:.2f} s "
              f"(target < 2 s)")
        seconds = upload_seconds(model_runs, folder, args.uploads)
        later = [shown for shown, _ in seconds[1:]] or [seconds[0][0]]
        print(f"upload -> overlay in chromium, default Mask R-CNN, 256x256 PNG: first {seconds[0][0]:.2f} s (loads "
              f"the model), then median {statistics.median(later):.2f} s over {len(later)} uploads (min "
              f"{min(later):.2f}, max {max(later):.2f}; target < 1 s); the page's script finished "
              f"{statistics.median(done - shown for shown, done in seconds[1:] or seconds):.2f} s after the overlay")


if __name__ == "__main__":
    main()
