"""Every dashboard page through Streamlit's AppTest, on the tiny runs of conftest's dashboard_runs."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import plotly.io
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from segcore import runs

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ["app_pages/leaderboard.py", "app_pages/compare.py", "app_pages/live.py", "app_pages/browse.py",
         "app_pages/training.py"]


@pytest.fixture
def app(dashboard_runs, monkeypatch) -> AppTest:
    monkeypatch.chdir(dashboard_runs.parent)  # runs/ is found as the default root
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    return AppTest.from_file(APP, default_timeout=120).run()


def no_exception(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_with_no_runs_every_page_says_how_to_get_some(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=60).run()
    no_exception(app)
    commands = "\n".join(c.value for c in app.code)
    assert "segcore zoo build" in commands and "segcore train" in commands and "--predictions" in commands
    for page in PAGES:
        app.switch_page(page).run()
        no_exception(app)
        assert app.info, page  # an explanation, not an empty page


def test_overview_shows_the_scoreboard_and_every_run(app):
    no_exception(app)
    scoreboard, listing = app.dataframe[0].value, app.dataframe[-1].value
    assert sorted(scoreboard["run"]) == ["fcn", "imported", "tiny"] and "mask AP" in scoreboard
    assert sorted(listing["name"]) == ["fcn", "fresh", "imported", "tiny"]


def test_run_folders_from_the_environment(dashboard_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGCORE_RUNS", str(dashboard_runs))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert len(app.dataframe[-1].value) == 4


def test_the_run_selection_holds_across_pages(app):
    picker = app.sidebar.multiselect[0]
    fcn = next(p for p in picker.options if p.startswith("fcn"))
    picker.set_value([picker.value[0]]).run()
    chosen = app.sidebar.multiselect[0].value
    for page in PAGES:
        app.switch_page(page).run()
        no_exception(app)
        assert app.sidebar.multiselect[0].value == chosen, page
    assert fcn  # the options name each run with its model


def test_leaderboard_ranks_every_family_with_charts(app):
    app.switch_page("app_pages/leaderboard.py").run()
    no_exception(app)
    table = app.dataframe[0].value
    assert set(table["family"]) == {"maskrcnn", "fcn", "external"}
    assert {"mask AP", "AP50", "APs", "box AP", "mIoU", "pixel accuracy", "boundary AP", "latency p50 (ms)",
            "params", "FLOPs"} <= set(table.columns)
    assert len(app.get("plotly_chart")) >= 6  # one per tab: bars, Pareto, heatmap, breakdowns, PR, calibration
    app.toggle(key="ap_intervals").set_value(True).run()
    no_exception(app)
    app.multiselect(key=f"families_{app.selectbox(key='evaluation').value}").set_value(["fcn"]).run()
    assert app.dataframe[0].value["family"].tolist() == ["fcn"]


def test_a_run_is_evaluated_from_the_leaderboard(app, dashboard_runs, shapes):
    app.switch_page("app_pages/leaderboard.py").run()
    app.selectbox(key="evaluate_run").set_value(str(Path("runs") / "fresh")).run()
    app.text_input(key="evaluate_split").set_value("test").run()
    app.button(key="evaluate_button").click().run()
    no_exception(app)
    assert (dashboard_runs / "fresh" / "evals" / f"{shapes.name}-test" / "metrics.json").is_file()
    assert app.selectbox(key="evaluation").value.endswith("-test")


def test_compare_two_runs_with_intervals_and_side_by_side_images(app, dashboard_runs):
    app.switch_page("app_pages/compare.py").run()
    no_exception(app)
    app.button(key="compare_button").click().run()
    no_exception(app)
    [written] = (dashboard_runs / app.selectbox(key="compare_b").value.split("/")[-1] / "comparisons").iterdir()
    comparison = json.loads(written.read_text())
    assert comparison["resamples"] == 1000
    assert {"B − A", "95% low", "95% high"} <= set(app.dataframe[0].value.columns)
    assert len(app.get("image")) == 3  # ground truth | A | B


def test_compare_opens_on_a_comparison_already_made(app, dashboard_runs):
    app.switch_page("app_pages/compare.py").run()
    first, second = app.selectbox(key="compare_a").value, app.selectbox(key="compare_b").value
    # the other way round from the page's plain default, so that only the comparison found explains it
    app.selectbox(key="compare_a").set_value(second).run()
    app.selectbox(key="compare_b").set_value(first).run()
    before = set(runs.comparison_files(first).values())
    app.button(key="compare_button").click().run()
    no_exception(app)
    [written] = set(runs.comparison_files(first).values()) - before
    try:
        again = AppTest.from_file(APP, default_timeout=120).run()
        again.switch_page("app_pages/compare.py").run()
        no_exception(again)
        assert (again.selectbox(key="compare_a").value, again.selectbox(key="compare_b").value) == (second, first)
        assert "compare_button" not in [button.key for button in again.button]
        assert again.dataframe  # the comparison's table, without a click
    finally:
        written.unlink()  # the other compare test expects none


def test_live_segmentation_of_uploads_in_every_format(app):
    app.switch_page("app_pages/live.py").run()
    no_exception(app)
    rng = np.random.default_rng(0)
    uploads = [
        ("grey16.png", png((rng.random((64, 80)) * 65535).astype(np.uint16)), "image/png"),
        ("rgba.png", png((rng.random((48, 48, 4)) * 255).astype(np.uint8), "RGBA"), "image/png"),
        ("large.png", png((rng.random((1400, 1200, 3)) * 255).astype(np.uint8)), "image/png"),
    ]
    tiff = io.BytesIO()
    Image.fromarray((rng.random((40, 50)) * 255).astype(np.uint8)).save(tiff, format="TIFF")
    uploads.append(("grey.tif", tiff.getvalue(), "image/tiff"))
    app.multiselect(key="live_models").set_value([str(Path("runs") / "maskrcnn"), str(Path("runs") / "fcn")]).run()
    app.file_uploader(key="live_upload").set_value(uploads).run()
    no_exception(app)
    assert not app.error
    assert len(app.get("image")) >= 2 * len(uploads)  # an overlay per image and model
    assert any("scaled down" in i.value for i in app.info)
    labels = [b.label for b in app.get("download_button")]
    assert labels.count("Masks (PNG)") == 2 * len(uploads)


def test_a_bad_upload_gets_one_sentence_not_a_traceback(app):
    app.switch_page("app_pages/live.py").run()
    app.file_uploader(key="live_upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    no_exception(app)
    assert [e.value for e in app.error] == [("uploaded file notes.png cannot be read as an image; upload a PNG, "
                                             "JPEG or TIFF image.")]


def test_an_image_from_the_dataset(app, shapes):
    app.switch_page("app_pages/live.py").run()
    app.radio(key="live_source").set_value("From a dataset").run()
    app.text_input(key="live_data").set_value(str(shapes)).run()
    no_exception(app)
    assert app.get("image")


def test_browse_sorts_filters_and_opens_an_image(app):
    app.switch_page("app_pages/browse.py").run()
    no_exception(app)
    assert len(app.dataframe[0].value) == 4
    assert len(app.get("image")) == 4 + 2  # the gallery, then ground truth and predictions coloured by outcome
    app.multiselect(key="browse_errors").set_value(["missed"]).run()
    no_exception(app)
    assert len(app.dataframe[0].value) >= 1


def test_training_curves_with_a_log_scale(app):
    app.switch_page("app_pages/training.py").run()
    no_exception(app)
    charts = len(app.get("plotly_chart"))
    assert charts >= 4  # loss, a term, lr, throughput
    app.toggle(key="training_log").set_value(True).run()
    no_exception(app)


def values(array) -> list:
    """A trace's x or y as a list: plotly writes numpy arrays into the page's JSON as base64 ("bdata")."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def validation_figures(app: AppTest) -> list:
    figures = [plotly.io.from_json(chart.proto.spec) for chart in app.get("plotly_chart")]
    return [f for f in figures if f.layout.title.text.startswith("validation ")]


def test_validation_curves_against_iterations_and_minutes_mark_the_checkpoint(app, dashboard_runs):
    app.switch_page("app_pages/training.py").run()
    no_exception(app)
    figures = validation_figures(app)
    assert [f.layout.xaxis.title.text for f in figures] == ["iteration", "wall-clock minutes"]
    assert all(f.layout.title.text == "validation mask AP" for f in figures)
    manifest = json.loads((dashboard_runs / "maskrcnn" / "run.json").read_text())
    validation = runs.read_validation(dashboard_runs / "maskrcnn")
    for figure, column in zip(figures, ["iteration", "minutes"]):
        traces = {trace.name: trace for trace in figure.data}
        assert {"tiny", "tiny: checkpoint.pt"} <= set(traces)  # one line per run, and its selected checkpoint
        assert values(traces["tiny"].x) == list(validation[column])
        chosen = validation[validation["iteration"] == manifest["best"]["iteration"]]
        assert values(traces["tiny: checkpoint.pt"].x) == list(chosen[column])
        assert values(traces["tiny: checkpoint.pt"].y) == list(chosen["val_mask_AP"])
    app.radio(key="training_val_metric").set_value("mIoU").run()
    no_exception(app)
    assert {f.layout.title.text for f in validation_figures(app)} == {"validation mIoU"}


def test_a_damaged_checkpoint_is_one_sentence_on_the_page(dashboard_runs, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(dashboard_runs / "fcn", root / "broken", ignore=shutil.ignore_patterns("evals", "comparisons"))
    (root / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("app_pages/live.py").run()
    no_exception(app)
    # not offered as a model: named, with what is wrong, instead
    assert f"fcn is left out: {Path('runs') / 'broken' / 'checkpoint.pt'} is cut short or is not a PyTorch " \
           "checkpoint (it is not a whole zip archive); train the run again, or restore the file." in \
           [w.value for w in app.warning]


def test_the_leaderboard_charts_where_the_attention_looks(app):
    app.switch_page("app_pages/leaderboard.py").run()
    # the split the attention model was evaluated on (another test may have evaluated a run on test)
    evaluations = app.selectbox(key="evaluation")
    evaluations.set_value(next(o for o in evaluations.options if o.endswith("-val"))).run()
    no_exception(app)
    tables = [frame.value for frame in app.dataframe if "mean focus" in frame.value]
    assert len(tables) == 1 and list(tables[0]["run"]) == ["tiny"]  # the one attention model among the runs
    titles = [plotly.io.from_json(chart.proto.spec).layout.title.text for chart in app.get("plotly_chart")]
    assert "Attention focus against mask IoU (matched detections)" in titles
