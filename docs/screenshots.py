"""The README's screenshots: each main page of the dashboard over the shipped demo zoo, taken in Debian's
chromium (headless, through Playwright) against ``streamlit run``, as a user would see it.

    .venv/bin/python docs/screenshots.py [--out docs/screenshots]     (or: make screenshots)

The app runs from the repository's root, so it shows data/zoo/ (and runs/, where there is one) and reads
the images from data/shapes/. Nothing is written into the runs: the Compare page opens on a comparison
the zoo ships.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from dashboard.browser import chromium, open_page, serve, settle

ROOT = Path(__file__).resolve().parents[1]



def attention_run(zoo_dir: Path) -> str:
    """The zoo's first run whose mask branch has spatial attention: the pages that can show one open on it."""
    models = json.loads((zoo_dir / "zoo.json").read_text())["models"]
    return next(name for name, entry in models.items() if (entry.get("options") or {}).get("attention") == "spatial")


#: Live and Browse are shown at score threshold 0.1 (eight steps of 0.05 below the default 0.5).
THRESHOLD_STEPS = 8


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox or multiselect labelled ``label``, as a user clicks it."""
    widget = page.locator('[data-testid="stSelectbox"], [data-testid="stMultiSelect"]').filter(
        has=page.get_by_text(label, exact=True)).first
    widget.get_by_role("combobox").first.click()  # Streamlit 1.67 draws both as an ARIA combobox
    page.get_by_role("option", name=re.compile(rf"^{re.escape(option)}( \(|$)")).first.click()
    page.keyboard.press("Escape")
    settle(page)


def lower_threshold(page, steps: int) -> None:
    """Move the page's first slider (its score threshold) down by ``steps`` of 0.05, from the keyboard."""
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(steps):
        slider.press("ArrowLeft")
    settle(page, timeout_ms=300_000)


def shoot(page, out: Path, name: str) -> None:
    page.wait_for_timeout(1500)  # plotly draws its charts after the script run is over
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"wrote {out / name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    if not (ROOT / "data" / "zoo" / "zoo.json").is_file():
        raise SystemExit("data/zoo holds no zoo; build it with make zoo first.")
    attention = attention_run(ROOT / "data" / "zoo")
    test_images = sorted((ROOT / "data" / "shapes" / "test").glob("*.png"))
    if not test_images:
        raise SystemExit("data/shapes has no test images; generate them with make data first.")
    args.out.mkdir(parents=True, exist_ok=True)
    with serve(ROOT, timeout_s=120) as url, chromium() as browser:
        for path, text, name in [("", "Scoreboard on", "overview"), ("leaderboard", "Leaderboard", "leaderboard"),
                                 ("compare", "Compare two runs", "compare"), ("training", "Training", "training")]:
            page = open_page(browser, f"{url}/{path}", text)
            shoot(page, args.out, name)
            page.close()

        # the zoo's models are barely trained, so few detections pass the default threshold of 0.5
        page = open_page(browser, f"{url}/live", "Live segmentation", height=1700)
        choose(page, "Models (run side by side)", attention)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(test_images[0]))
        page.locator('[data-testid="stImage"] img').first.wait_for(timeout=300_000)
        settle(page, timeout_ms=300_000)
        lower_threshold(page, THRESHOLD_STEPS)
        shoot(page, args.out, "live")
        page.close()

        page = open_page(browser, f"{url}/browse", "Browse images", height=2300)
        choose(page, "Run", attention)
        lower_threshold(page, THRESHOLD_STEPS)
        shoot(page, args.out, "browse")
        page.close()


if __name__ == "__main__":
    main()
