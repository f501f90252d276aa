"""Issue 6, section 5: the dashboard under misuse. A damaged run directory is listed as damaged, with the
file and what is wrong, while every other run works on every page; and no name typed into the dashboard,
given on the command line or read from a file leads segcore outside the folder it belongs in.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from segcore import runs
from segcore.app.browse import image_view
from segcore.cli import main
from segcore.errors import SegcoreError
from segcore.runs import DatasetSource
from segcore.runs import health as run_health

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
EVAL = "evals/shapes-val"
#: The runs of conftest's dashboard_runs, by their names in run.json ("tiny" is the folder maskrcnn).
GOOD = ["fcn", "fresh", "imported", "tiny"]
EVALUATED = ["fcn", "imported", "tiny"]


def cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)  # not even text


def edit_json(change):
    def damage(path: Path) -> None:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return damage


def remove(*names: str):
    def damage(path: Path) -> None:
        for name in names:
            (path / name).unlink()
    return damage


def damaged_comparison(path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text('{"a": {"name": "fcn"}, "metrics": {"mask_AP": {"difference": 0.1, "lo')


#: What is damaged in the run "broken" (a copy of the evaluated Mask R-CNN): id -> (file, how, words the
#: sentence about it says besides the file's name).
DAMAGES = {
    "run.json not JSON": ("run.json", lambda p: p.write_text('{"name": "broken", "kind": '), "not valid JSON"),
    "run.json a JSON list": ("run.json", lambda p: p.write_text('["broken", "trained"]'), "holds an array"),
    "run.json without its name": ("run.json", edit_json(lambda m: {k: v for k, v in m.items() if k != "name"}),
                                  'lacks "name"'),
    "metrics.json cut short": (f"{EVAL}/metrics.json", cut, "not valid JSON"),
    "metrics.json of the wrong shape": (f"{EVAL}/metrics.json", edit_json(lambda m: {**m, "segm": [1, 2]}),
                                        'an array at "segm"'),
    "per_image.csv cut short": (f"{EVAL}/per_image.csv", cut, "cut short"),
    "per_image.csv garbage": (f"{EVAL}/per_image.csv", garbage, "not a readable CSV table"),
    "per_instance.csv cut short": (f"{EVAL}/per_instance.csv", cut, "cut short"),
    "per_instance.csv garbage": (f"{EVAL}/per_instance.csv", garbage, "not a readable CSV table"),
    "predictions.json cut short": (f"{EVAL}/predictions.json", cut, "cut short"),
    "curves.json missing": (EVAL, remove("curves.json"), "has no curves.json"),
    "eval folder missing files": (EVAL, remove("per_image.csv", "predictions.json"), "has no per_image.csv"),
    "checkpoint.pt cut short": ("checkpoint.pt", cut, "not a whole zip archive"),
    "checkpoint.pt zero bytes": ("checkpoint.pt", lambda p: p.write_bytes(b""), "is empty"),
    "history.csv garbage": ("history.csv", garbage, "not a readable CSV table"),
    "history.csv of other columns": ("history.csv", lambda p: p.write_text("when,what\nmonday,nothing\n"),
                                     "lacks the columns epoch, iteration, lr, loss, images_per_s"),
    "comparison file damaged": ("comparisons/shapes-val-vs-fcn.json", damaged_comparison, "not valid JSON"),
}


def make_runs(dashboard_runs: Path, root: Path, damage: str | None) -> Path:
    """dashboard_runs' four runs copied to ``root``, and "broken", a copy of the Mask R-CNN run with
    ``damage`` done to it."""
    # what other tests may have added to the shared runs (test_dashboard evaluates one on the test split)
    skip = shutil.ignore_patterns("comparisons", ".*", "*-test")
    for run in dashboard_runs.iterdir():
        # hard links: the good runs are only read, or written by rename (new files), and 35 copies of
        # their checkpoints would take gigabytes of CI's disk
        shutil.copytree(run, root / run.name, ignore=skip, copy_function=os.link)
    shutil.copytree(dashboard_runs / "maskrcnn", root / "broken", ignore=skip)
    runs.write_json(root / "broken" / "run.json", {**runs.read_run(root / "broken"), "name": "broken"})
    if damage is not None:
        file, how, _ = DAMAGES[damage]
        how(root / "broken" / file)
    return root


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def no_exception(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def png(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# ---- damage is found, file by file ----

@pytest.mark.hardening(5, "damaged or partial run directories", "listed as damaged, naming the file and what is wrong")
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_check_run_names_the_damaged_file_and_what_is_wrong(dashboard_runs, tmp_path, damage):
    root = make_runs(dashboard_runs, tmp_path / "runs", damage)
    file, _, words = DAMAGES[damage]
    found = run_health.check_run(root / "broken")
    assert found, damage
    sentence = " ".join(found.values())
    assert words in sentence and str(root / "broken" / file) in sentence, found
    for good in ("maskrcnn", "fcn", "fresh", "imported"):
        assert run_health.check_run(root / good) == {}, good  # and nothing else is


def test_a_run_being_trained_is_not_damaged(dashboard_runs, tmp_path):
    # history.csv grows a line at a time: a reader may see its last line cut short, which is no damage
    root = make_runs(dashboard_runs, tmp_path / "runs", None)
    history = root / "broken" / "history.csv"
    history.write_bytes(history.read_bytes() + b"2,5,0.01,1.")
    assert run_health.check_run(root / "broken") == {}


# ---- every page, with one damaged run among good ones ----

PAGES = ["app_pages/leaderboard.py", "app_pages/compare.py", "app_pages/browse.py", "app_pages/training.py",
         "app_pages/live.py"]


@pytest.mark.hardening(5, "a damaged run among good ones, on every page",
                       "no exception; the good runs show; the damaged one is named with its file and fault")
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_every_page_shows_the_good_runs_and_names_the_damaged_one(dashboard_runs, tmp_path, monkeypatch, damage):
    make_runs(dashboard_runs, tmp_path / "runs", damage)
    file, _, words = DAMAGES[damage]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    no_exception(app)

    # Overview: every run listed, the damaged one with its status and reason; the scoreboard has the good ones
    listing = app.dataframe[-1].value.set_index("path")
    broken = listing.loc[str(Path("runs") / "broken")]
    assert broken["status"] == "damaged" and words in broken["damage"] and file.split("/")[-1] in broken["damage"]
    assert set(GOOD) <= set(listing["name"]) and listing.drop(str(Path("runs") / "broken"))["damage"].isna().all()
    assert set(EVALUATED) <= set(app.dataframe[0].value["run"])
    assert any(words in w for w in texts(app.warning))
    # the damaged run starts unselected; select it too, so that each page meets it
    picker = app.sidebar.multiselect[0]
    assert str(Path("runs") / "broken") not in picker.value
    picker.set_value(picker.options).run()

    for page in PAGES:
        app.switch_page(page).run()
        no_exception(app)
        assert not app.error, (page, texts(app.error))
        # on every page the sidebar names the damaged run, its file and what is wrong
        assert any("broken is damaged" in w and words in w for w in texts(app.sidebar.warning)), page
        eval_damage = file.startswith(EVAL) or file == "run.json"
        if page.endswith("leaderboard.py"):
            shown = set(app.dataframe[0].value["run"])
            assert set(EVALUATED) <= shown and len(app.get("plotly_chart")) >= 6
            assert ("broken" in shown) != eval_damage
            assert eval_damage == any("broken is left out" in w and words in w for w in texts(app.main.warning))
        elif page.endswith("compare.py"):
            candidates = app.selectbox(key="compare_a").options
            assert {"fcn", "tiny", "imported"} <= set(candidates) and ("broken" in candidates) != eval_damage
        elif page.endswith("browse.py"):
            assert len(app.dataframe[0].value) == 4 and app.get("image")
            assert ("broken" in app.selectbox(key="browse_run").options) != eval_damage
        elif page.endswith("training.py"):
            assert len(app.get("plotly_chart")) >= 4
            if file in ("history.csv", "run.json"):
                assert any("broken is left out" in w for w in texts(app.main.warning))
        else:  # Live: the good models segment an upload
            app.multiselect(key="live_models").set_value([str(Path("runs") / "maskrcnn"),
                                                          str(Path("runs") / "fcn")]).run()
            app.file_uploader(key="live_upload").set_value(("a.png", png(48, 64), "image/png")).run()
            no_exception(app)
            assert not app.error and len(app.get("image")) >= 2


@pytest.mark.hardening(5, "a damaged comparison file on the Compare page",
                       "named as damaged, and made again on request")
def test_a_damaged_comparison_is_named_and_made_again(dashboard_runs, tmp_path, monkeypatch):
    root = make_runs(dashboard_runs, tmp_path / "runs", "comparison file damaged")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.sidebar.multiselect[0].set_value(app.sidebar.multiselect[0].options).run()
    app.switch_page("app_pages/compare.py").run()
    app.selectbox(key="compare_a").set_value(str(Path("runs") / "fcn")).run()
    app.selectbox(key="compare_b").set_value(str(Path("runs") / "broken")).run()
    no_exception(app)
    damaged = root / "broken" / "comparisons" / "shapes-val-vs-fcn.json"
    relative = Path("runs") / "broken" / "comparisons" / damaged.name
    assert any(str(relative) in w and "not valid JSON" in w for w in texts(app.main.warning))
    app.button(key="compare_button").click().run()
    no_exception(app)
    assert json.loads(damaged.read_text())["resamples"] == 1000 and app.dataframe


@pytest.mark.hardening(5, "damaged or partial run directories", "listed as damaged, naming the file and what is wrong")
def test_a_run_json_of_a_json_list_does_not_hide_the_other_runs(dashboard_runs, tmp_path):
    # before: find_runs spread the list into a dict, and every page failed with a TypeError
    root = make_runs(dashboard_runs, tmp_path / "runs", "run.json a JSON list")
    found = {m["name"]: m for m in runs.find_runs(root)}
    assert set(GOOD) <= set(found) and "holds an array" in found["broken"]["error"]


# ---- names that become paths ----

ESCAPES = ["../../escape", "/abs/escape", "a/../../../../escape"]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.hardening(5, "a run name with ../ or / in it, used by compare as a file name",
                       "made a plain file name inside RUN_B/comparisons")
@pytest.mark.parametrize("name", ESCAPES)
def test_a_run_name_cannot_lead_compare_outside_comparisons(dashboard_runs, shapes, tmp_path, name):
    root = make_runs(dashboard_runs, tmp_path / "sandbox" / "runs", None)
    runs.write_json(root / "fcn" / "run.json", {**runs.read_run(root / "fcn"), "name": name})
    before = files_under(tmp_path)
    assert main(["compare", str(root / "fcn"), str(root / "broken"), "--data", str(shapes), "--split", "val",
                 "--resamples", "10", "--no-progress"]) == 0
    comparisons = root / "broken" / "comparisons"
    [written] = [p for p in files_under(tmp_path) - before if p.is_file()]
    assert files_under(tmp_path) - before == {comparisons, written} and written.parent == comparisons, written
    assert json.loads(written.read_text())["a"]["name"] == name  # the name itself is kept as it was
    assert not (Path("/abs/escape.json").exists() or (tmp_path / "escape.json").exists())


@pytest.mark.hardening(5, "a run name with ../ or / in it, used by compare as a file name",
                       "made a plain file name inside RUN_B/comparisons")
@pytest.mark.parametrize("name", ESCAPES)
def test_the_compare_page_finds_the_comparison_of_such_a_name(dashboard_runs, tmp_path, monkeypatch, name):
    root = make_runs(dashboard_runs, tmp_path / "runs", None)
    runs.write_json(root / "fcn" / "run.json", {**runs.read_run(root / "fcn"), "name": name})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page("app_pages/compare.py").run()
    app.selectbox(key="compare_a").set_value(str(Path("runs") / "fcn")).run()
    app.selectbox(key="compare_b").set_value(str(Path("runs") / "maskrcnn")).run()
    before = files_under(tmp_path.parent)
    app.button(key="compare_button").click().run()
    no_exception(app)
    comparisons = root / "maskrcnn" / "comparisons"
    [written] = [p for p in files_under(tmp_path.parent) - before if p.is_file()]
    assert files_under(tmp_path.parent) - before == {comparisons, written} and written.parent == comparisons
    again = AppTest.from_file(APP, default_timeout=120).run()
    again.switch_page("app_pages/compare.py").run()
    assert (again.selectbox(key="compare_a").value, again.selectbox(key="compare_b").value) == (
        str(Path("runs") / "fcn"), str(Path("runs") / "maskrcnn"))  # found again, by its plain file name
    assert "compare_button" not in [b.key for b in again.button]


@pytest.mark.hardening(5, "a split with ../ or / in it (segcore train, eval, compare)",
                       "refused with one sentence; nothing written")
@pytest.mark.parametrize("split", ["../../escape", "/abs/escape", ".."])
def test_a_split_cannot_lead_outside_the_dataset_or_the_run(dashboard_runs, shapes, tmp_path, split, capsys):
    root = make_runs(dashboard_runs, tmp_path / "runs", None)
    before = files_under(tmp_path)
    for argv in (["eval", str(root / "fresh"), "--data", str(shapes), "--split", split, "--no-progress"],
                 ["compare", str(root / "fcn"), str(root / "maskrcnn"), "--data", str(shapes), "--split", split],
                 ["train", "--model", "fcn", "--data", str(shapes), "--out", str(tmp_path / "new"), "--max-iters", "1",
                  "--val-split", split]):
        assert main(argv) == 2
        said = capsys.readouterr().err
        assert said == f"error: split {split!r} is not a plain name such as val or test (it names " \
                       "annotations/instances_<split>.json, the <split>/ image folder and the eval folder).\n"
    assert files_under(tmp_path) == before


def test_a_split_of_dot_dot_would_read_images_beside_the_dataset(shapes):
    # the danger: the split names the image folder, DIR/<split>/, so ".." is the dataset's parent
    from segcore.data import layout

    assert (shapes / "..").resolve() == shapes.parent.resolve()
    with pytest.raises(SegcoreError, match="is not a plain name"):
        layout.image_folder(shapes, "..")


@pytest.mark.hardening(5, "an image file_name with ../ in a dataset's annotation file", "refused with one sentence "
                       "naming the image id; no file outside the image folder is opened")
def test_a_dataset_file_name_cannot_lead_outside_the_image_folder(shapes, tmp_path):
    from segcore.data import CocoSegmentation
    from segcore.errors import DatasetError

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    (tmp_path / "secret.png").write_bytes((data / "val" / sorted(p.name for p in (data / "val").iterdir())[0])
                                          .read_bytes())
    path = data / "annotations" / "instances_val.json"
    content = json.loads(path.read_text())
    content["images"][0]["file_name"] = "../../secret.png"
    path.write_text(json.dumps(content))
    image_id = content["images"][0]["id"]
    with pytest.raises(DatasetError, match=rf"image {image_id} in .*instances_val.json has a \"file_name\" "
                                           r"\('../../secret.png'\) that leads outside"):
        CocoSegmentation(data, "val")


@pytest.mark.hardening(5, "the Leaderboard's Evaluate: a dataset folder or split leading elsewhere",
                       "refused with one sentence; nothing written")
@pytest.mark.parametrize("field,value", [("split", "../../escape"), ("split", "/abs/escape"),
                                         ("data", "../elsewhere/shapes"), ("data", "/abs/escape")])
def test_the_evaluate_form_stays_in_the_dashboards_folders(dashboard_runs, shapes, tmp_path, monkeypatch, field,
                                                           value):
    make_runs(dashboard_runs, tmp_path / "site" / "runs", None)
    shutil.copytree(shapes, tmp_path / "elsewhere" / "shapes")  # a dataset the dashboard was not pointed at
    monkeypatch.chdir(tmp_path / "site")
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page("app_pages/leaderboard.py").run()
    app.selectbox(key="evaluate_run").set_value(str(Path("runs") / "fresh")).run()
    if field == "split":
        app.text_input(key="evaluate_split").set_value(value).run()
    else:
        app.text_input(key=f"evaluate_data_{Path('runs') / 'fresh'}").set_value(value).run()
    before = files_under(tmp_path)
    app.button(key="evaluate_button").click().run()
    no_exception(app)
    assert files_under(tmp_path) == before
    [error] = texts(app.error)
    assert (f"split {value!r} is not a plain name" if field == "split" else
            f"dataset folder {value!r} lies outside the folders this dashboard may read") in error, error


@pytest.mark.hardening(5, "the sidebar's run folders: a folder outside the dashboard's",
                       "refused with one sentence; its runs not read")
@pytest.mark.parametrize("typed", ["../outside", "/abs/escape", "runs/../../outside"])
def test_run_folders_typed_in_the_sidebar_stay_inside_the_dashboards_folder(dashboard_runs, tmp_path, monkeypatch,
                                                                            typed):
    make_runs(dashboard_runs, tmp_path / "site" / "runs", None)
    shutil.copytree(dashboard_runs / "fcn", tmp_path / "outside" / "secret", ignore=shutil.ignore_patterns("comp*"))
    monkeypatch.chdir(tmp_path / "site")
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.sidebar.text_input(key="extra_roots").set_value(typed).run()
    no_exception(app)
    assert not any("secret" in path for path in app.sidebar.multiselect[0].options)
    assert [e for e in texts(app.sidebar.error)] == [
        f"run folder {typed!r} lies outside the folders this dashboard may read ({tmp_path / 'site'}); start the "
        "dashboard with --runs DIR to show runs from elsewhere."]


@pytest.mark.parametrize("where", ["sidebar", "evaluate data", "evaluate split", "live data", "live split"])
def test_a_name_too_long_for_the_file_system_is_one_sentence_and_keeps_the_runs(dashboard_runs, tmp_path,
                                                                                monkeypatch, where):
    make_runs(dashboard_runs, tmp_path / "site" / "runs", None)
    monkeypatch.chdir(tmp_path / "site")
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    listed = len(app.sidebar.multiselect[0].options)
    long = "x" * 300
    if where == "sidebar":
        app.sidebar.text_input(key="extra_roots").set_value(long).run()
        errors = texts(app.sidebar.error)
    elif where.startswith("evaluate"):
        app.switch_page("app_pages/leaderboard.py").run()
        app.selectbox(key="evaluate_run").set_value(str(Path("runs") / "fresh")).run()
        key = "evaluate_split" if where.endswith("split") else f"evaluate_data_{Path('runs') / 'fresh'}"
        app.text_input(key=key).set_value(long).run()
        app.button(key="evaluate_button").click().run()
        errors = texts(app.error)
    else:
        app.switch_page("app_pages/live.py").run()
        app.radio(key="live_source").set_value("From a dataset").run()
        app.text_input(key="live_data" if where.endswith("data") else "live_split").set_value(long).run()
        errors = texts(app.error)
    no_exception(app)
    assert len(errors) == 1 and "'xxxxxxxxxx" in errors[0] and "too long" in errors[0], errors
    assert len(app.sidebar.multiselect[0].options) == listed


def test_a_run_folder_inside_the_dashboards_folder_is_still_read(dashboard_runs, tmp_path, monkeypatch):
    make_runs(dashboard_runs, tmp_path / "site" / "more", None)
    monkeypatch.chdir(tmp_path / "site")
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.sidebar.text_input(key="extra_roots").set_value("more").run()
    assert not app.sidebar.error and len(app.sidebar.multiselect[0].options) == 5


@pytest.mark.hardening(5, "an image file_name with ../ in the ground truth, on the Browse page",
                       "not read: the image counts as missing")
def test_an_image_file_name_cannot_lead_browse_outside_the_image_folder(tmp_path):
    images = tmp_path / "data" / "val"
    images.mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(tmp_path / "secret.png")  # outside the split's image folder

    class GroundTruth:  # what image_view reads of a pycocotools COCO
        imgs = {1: {"id": 1, "file_name": "../../secret.png", "height": 8, "width": 8}}
        imgToAnns: dict = {1: []}
        cats: dict = {}

    import pandas as pd

    empty = pd.DataFrame({"image_id": [], "gt_id": [], "pred_id": [], "error_type": []})
    source = DatasetSource(tmp_path / "data" / "annotations" / "instances_val.json", images, tmp_path / "data", "val")
    assert (images / "../../secret.png").is_file()  # the danger: the path does reach the file
    assert image_view(GroundTruth(), source, 1, [], empty).image is None


@pytest.mark.hardening(5, "per_instance.csv naming predictions that predictions.json lacks",
                       "refused with one sentence naming the files")
def test_a_prediction_id_beyond_the_predictions_is_one_sentence(tmp_path):
    import pandas as pd

    class GroundTruth:
        imgs = {1: {"id": 1, "file_name": "a.png", "height": 8, "width": 8}}
        imgToAnns: dict = {1: []}
        cats: dict = {}

    rows = pd.DataFrame({"image_id": [1], "gt_id": [np.nan], "pred_id": [3.0], "error_type": ["background"],
                         "category": ["x"], "score": [0.9], "iou": [0.0]})
    source = DatasetSource(tmp_path / "instances_val.json", None, None, "val")
    with pytest.raises(SegcoreError, match="per_instance.csv names prediction 3 of image 1, but predictions.json "
                                           "holds 1; evaluate the run again."):
        image_view(GroundTruth(), source, 1, [{"image_id": 1, "score": 0.9}], rows)


@pytest.mark.hardening(5, "train --name and eval --predictions --name with ../ or / in them",
                       "kept as the run's label; nothing written outside --out")
@pytest.mark.parametrize("name", ESCAPES)
def test_an_imported_run_name_is_a_label_not_a_path(dashboard_runs, shapes, tmp_path, name):
    out = tmp_path / "sandbox" / "imported"
    assert main(["eval", "--gt", str(shapes / "annotations" / "instances_val.json"), "--predictions",
                 str(dashboard_runs / "maskrcnn" / EVAL / "predictions.json"), "--out", str(out), "--name", name]) == 0
    assert {p for p in files_under(tmp_path) if out not in p.parents} == {out.parent, out}
    assert runs.read_run(out)["name"] == name


@pytest.mark.hardening(5, "train --name and eval --predictions --name with ../ or / in them",
                       "kept as the run's label; nothing written outside --out")
def test_a_trained_run_name_is_a_label_not_a_path(shapes, tmp_path):
    out = tmp_path / "sandbox" / "trained"
    assert main(["train", "--model", "unet", "--data", str(shapes), "--out", str(out), "--name", "../../escape",
                 "--max-iters", "1", "--batch-size", "2", "--depth", "3", "--width", "8", "--no-progress"]) == 0
    assert {p for p in files_under(tmp_path) if out not in p.parents} == {out.parent, out}
    assert runs.read_run(out)["name"] == "../../escape"
