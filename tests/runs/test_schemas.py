"""Issue 16, section 1, for the files of a run directory: valid files of the wrong shape inside.

segcore.runs.schemas declares the whole shape of run.json, metrics.json, curves.json, the CSV tables and the comparison
files, and the readers of segcore.runs check every file against it. Here the files of a shipped zoo run are
changed inside (hypothesis, structure-aware): a reader returns, or raises one SegcoreError naming the file, and
run_health.check_run never raises; then the red team's examples one by one, and the dashboard's pages over runs
damaged in each of those ways.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import io
import json
import operator
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from segcore import runs
from segcore.app import browse, figures, leaderboard
from segcore.errors import SegcoreError
from segcore.evaluation import compare
from segcore.evaluation.compare import compare_runs
from segcore.runs import health as run_health
from segcore.runs import schemas

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "data" / "zoo"
SHIPPED = ZOO / "maskrcnn"
EVAL = "evals/shapes-test"
#: where the fixture puts a comparison file of the zoo (the zoo writes each into its run B, not always this one)
COMPARISON = "comparisons/shapes-test-vs-other.json"
APP = str(ROOT / "dashboard" / "app.py")
#: The eval folder and the comparison file of conftest's dashboard_runs, the runs the pages are shown.
PAGE_EVAL = "evals/shapes-val"
PAGE_COMPARISON = "comparisons/shapes-val-vs-fcn.json"

#: Each file of the shipped run the tests change, and its reader.
READERS = {
    "run.json": runs.read_run,
    f"{EVAL}/metrics.json": lambda run: runs.read_metrics(run / EVAL),
    f"{EVAL}/curves.json": lambda run: runs.read_curves(run / EVAL),
    COMPARISON: lambda run: runs.read_comparison(run / COMPARISON),
    "history.csv": runs.read_history,
    "validation.csv": runs.read_validation,
    f"{EVAL}/per_image.csv": lambda run: runs.read_per_image(run / EVAL),
    f"{EVAL}/per_instance.csv": lambda run: runs.read_per_instance(run / EVAL),
}
JSON_FILES = [f for f in READERS if f.endswith(".json")]
TABLES = [f for f in READERS if f.endswith(".csv")]


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory) -> Path:
    """A copy of the zoo's Mask R-CNN run: its test evaluation and its comparison (the val one left out)."""
    if not SHIPPED.is_dir():
        pytest.skip(f"no zoo shipped in {ZOO}")
    shipped = sorted(ZOO.glob("*/comparisons/shapes-test-vs-*.json"))
    if not shipped:
        pytest.skip(f"the zoo in {ZOO} has no comparison on the test split")
    run = tmp_path_factory.mktemp("shipped") / "maskrcnn"
    shutil.copytree(SHIPPED, run, ignore=shutil.ignore_patterns("shapes-val", "comparisons"))
    (run / COMPARISON).parent.mkdir()
    shutil.copyfile(shipped[0], run / COMPARISON)
    return run


def read_or_named(run: Path, file: str) -> None:
    """``file``'s reader returns, or raises one SegcoreError naming the file; check_run never raises, and lists
    the file when its reader refused it; the scoreboard leaves out what is damaged, and what the pages and
    segcore compare do with the files that are not works."""
    try:
        READERS[file](run)
        refused = None
    except SegcoreError as error:
        refused = str(error)
        assert str(run / file) in refused and "\n" not in refused, refused
    damage = run_health.check_run(run)
    if refused is not None:
        assert damage.get(file) == refused, (file, damage)
    found = [{**manifest, "damage": run_health.check_run(manifest["path"])} for manifest in runs.find_runs(run.parent)]
    scored = leaderboard.leaderboard(found, "shapes-test")
    assert len(scored) == (0 if any(f == "run.json" or f.startswith(EVAL) for f in damage) else 1), damage
    if not any(f.startswith(EVAL) for f in damage):
        charts(runs.read_metrics(run / EVAL), runs.read_curves(run / EVAL))
        with contextlib.suppress(SegcoreError):  # Browse and Compare find the ground truth by it
            runs.dataset_source(run / EVAL)
        per_image, per_instance = runs.read_per_image(run / EVAL), runs.read_per_instance(run / EVAL)
        leaderboard.per_image_intervals(run / EVAL, resamples=10)
        browse.filter_images(per_image, per_instance, classes=["circle"], error_types=["missed"],
                             area_buckets=["small"], occlusion=(0.25, 1.0))
        compare._per_image(run / EVAL)
    if COMPARISON not in damage:  # the Compare page
        comparison = runs.read_comparison(run / COMPARISON)
        figures.comparison_intervals(comparison)
        pd.DataFrame([{"B − A": v["difference"], "A": v.get("a"), "p": v.get("p_value")}
                      for v in comparison["metrics"].values()])
        for rows in comparison["most_different"].values():
            pd.DataFrame(rows).set_index("image_id").loc[:, "file_name"]
    if not {"run.json", "history.csv", "validation.csv"} & set(damage):  # the Training page
        figures.training_curves({"run": runs.read_history(run)}, "loss_mask")
        figures.validation_curves({"run": runs.read_validation(run)}, "mIoU", "iteration",
                                  {"run": runs.selected_iteration(runs.read_run(run))})


def charts(metrics: dict, curves: dict) -> None:
    """The Leaderboard's charts of one run, from its metrics.json and curves.json, as the page draws them."""
    figures.per_class_heatmap({"run": (metrics.get("segm") or {}).get("per_class") or {}})
    figures.per_class_heatmap({"run": (metrics.get("semantic") or {}).get("per_class_iou") or {}})
    breakdowns = metrics.get("breakdowns") or {}
    for group in ("occlusion", "objects_per_image"):
        figures.breakdown_bars({"run": breakdowns.get(group) or {}}, group)
    for group in ("occlusion", "objects_per_image", "area"):
        figures.breakdown_bars({"run": (breakdowns.get("mean_iou") or {}).get(group) or {}}, group)
    for kind in ("segm", "bbox"):
        figures.pr_curves({"run": curves.get(kind)}, "precision50")
    figures.calibration_plot({"run": metrics.get("calibration")})
    if isinstance(metrics.get("attention"), dict):
        leaderboard.attention_table({"run": metrics["attention"]})


@contextlib.contextmanager
def written(path: Path, text: str):
    """``path`` holding ``text`` for a while, then its own bytes again."""
    original = path.read_bytes()
    path.write_text(text)
    try:
        yield
    finally:
        path.write_bytes(original)


# ---- structure-aware mutations ----

#: Stand-ins for what json.dumps cannot write, replaced in the text: a number of 5000 digits (more than Python
#: reads), and arrays nested deeper than segcore writes, and deeper than Python's JSON reader goes.
SPLICED = {"<5000 digits>": "9" * 5000, **{f"<nested {n}>": "[" * n + "]" * n for n in (3, schemas.MAX_DEPTH, 3000)}}
#: Values of every JSON type; json.dumps writes NaN and infinity as NaN and Infinity, which json.loads reads.
OTHER_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([2 ** 63, 2 ** 70, -2 ** 70, 10 ** 400]),
    st.floats(), st.sampled_from(["NaN", "", "1e999", "0.5"]), st.text(max_size=8),
    st.lists(st.integers(), max_size=3), st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.none() | st.integers() | st.text(max_size=3), max_size=3),
    st.sampled_from(sorted(SPLICED)))


def paths_inside(content) -> list[tuple]:
    """The path (keys and indexes) to every value inside JSON ``content``, its top level excluded."""
    out, stack = [], [((), content)]
    while stack:
        path, value = stack.pop()
        if path:
            out.append(path)
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack.extend((path + (key,), child) for key, child in children)
    return out


@st.composite
def mutated_json(draw, content) -> str:
    """``content`` with one value inside replaced by one of another type, or dropped, as JSON text; the depth
    is drawn first, so that the sections of a file are hit as often as the numbers of its long lists."""
    paths = paths_inside(content)
    depth = draw(st.integers(1, max(len(p) for p in paths)))
    *parents, key = draw(st.sampled_from(sorted((p for p in paths if len(p) == depth), key=str)))
    changed = copy.deepcopy(content)
    parent = functools.reduce(operator.getitem, parents, changed)
    if draw(st.booleans()):
        del parent[key]
    else:
        parent[key] = draw(OTHER_VALUES)
    text = json.dumps(changed)
    for stand_in, spliced in SPLICED.items():
        text = text.replace(json.dumps(stand_in), spliced)
    return text


CELLS = st.one_of(st.sampled_from(["", "inf", "-inf", "nan", "1e999", str(2 ** 63), str(2 ** 70), "-1", "True",
                                   "x", "1.5"]), st.text(max_size=6))


@st.composite
def mutated_table(draw, text: str) -> str:
    """A CSV table with a column turned to text, dropped or renamed, a cell replaced, or its rows removed."""
    header, *rows = list(csv.reader(io.StringIO(text)))
    column = draw(st.integers(0, len(header) - 1))
    how = draw(st.sampled_from(["text column", "drop column", "rename column", "one cell", "no rows"]))
    if how == "text column":
        word = draw(st.text("abcdxyz ,\"", min_size=1, max_size=6))
        rows = [[*row[:column], word, *row[column + 1:]] for row in rows]
    elif how == "drop column":
        header, rows = [c for i, c in enumerate(header) if i != column], [r[:column] + r[column + 1:] for r in rows]
    elif how == "rename column":
        header[column] = draw(st.text(max_size=6))
    elif how == "one cell" and rows:
        rows[draw(st.integers(0, len(rows) - 1))][column] = draw(CELLS)
    else:
        rows = []
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def test_the_shipped_zoo_reads_whole():
    """Every file segcore wrote into the zoo has the shape segcore.runs.schemas declares."""
    shipped = [p for p in sorted(ZOO.iterdir()) if (p / runs.RUN_FILE).is_file()] if ZOO.is_dir() else []
    if not shipped:
        pytest.skip(f"no zoo shipped in {ZOO}")
    for run in shipped:
        assert run_health.check_run(run) == {}, run
        for folder in runs.eval_folders(run).values():
            runs.read_curves(folder), runs.read_per_image(folder), runs.read_per_instance(folder)


@pytest.mark.hardening(6, "a shipped run's run.json, metrics.json, curves.json and comparison changed inside (a "
                          "value of another type, NaN, infinity, 2**70, 5000 digits, deep nesting; a key dropped)",
                       "the reader returns, or one SegcoreError names the file and the field; check_run lists the "
                       "file and never raises")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_json_files_changed_inside_are_read_or_named(shipped_run, data):
    file = data.draw(st.sampled_from(JSON_FILES))
    text = data.draw(mutated_json(json.loads((shipped_run / file).read_text())))
    with written(shipped_run / file, text):
        read_or_named(shipped_run, file)


@pytest.mark.hardening(6, "a shipped run's CSV tables changed inside (a column of text, dropped or renamed; a cell "
                          "of inf, 2**70 or text; no rows)",
                       "the reader returns, or one SegcoreError names the file and the column; check_run lists the "
                       "file and never raises")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tables_changed_inside_are_read_or_named(shipped_run, data):
    file = data.draw(st.sampled_from(TABLES))
    text = data.draw(mutated_table((shipped_run / file).read_text()))
    with written(shipped_run / file, text):
        read_or_named(shipped_run, file)


# ---- the red team's examples ----


def edit_json(change):
    def damage(path: Path) -> None:
        content = json.loads(path.read_text())
        change(content)
        path.write_text(json.dumps(content))
    return damage


def edit_table(change):
    def damage(path: Path) -> None:
        change(pd.read_csv(path)).to_csv(path, index=False)
    return damage


def each_metric(key: str, value):
    def change(comparison: dict) -> None:
        for interval in comparison["metrics"].values():
            interval[key] = value
    return change


#: The red team's damage, inside files that are still valid JSON or CSV: id -> (file in the run, with {eval}
#: and {comparison} for the eval folder and the comparison file, how, words the sentence about it says).
NAMED = {
    "metrics.json breakdowns.occlusion a list": (
        "{eval}/metrics.json", edit_json(lambda m: m["breakdowns"].update(occlusion=[0.1, 0.2])),
        'an array at "breakdowns.occlusion"'),
    "metrics.json calibration a string": (
        "{eval}/metrics.json", edit_json(lambda m: m.update(calibration="well calibrated")),
        'a string at "calibration"'),
    "metrics.json segm.per_class a list": (
        "{eval}/metrics.json", edit_json(lambda m: m["segm"].update(per_class=[0.1, 0.2])),
        'an array at "segm.per_class"'),
    "metrics.json source.gt a number": (
        "{eval}/metrics.json", edit_json(lambda m: m["source"].update(gt=7)), 'a number at "source.gt"'),
    "curves.json segm a number": ("{eval}/curves.json", edit_json(lambda c: c.update(segm=0.5)), 'a number at "segm"'),
    "per_image.csv f1 as text": (
        "{eval}/per_image.csv", edit_table(lambda t: t.assign(f1="good")), "holds text where f1 should be a number"),
    "per_image.csv without metric columns": (
        "{eval}/per_image.csv", edit_table(lambda t: t[["image_id", "file_name"]]), "lacks the columns n_objects"),
    "per_instance.csv without category": (
        "{eval}/per_instance.csv", edit_table(lambda t: t.drop(columns=["category"])), "lacks the column category"),
    "run.json dataset a string": ("run.json", edit_json(lambda m: m.update(dataset="data/shapes")),
                                  'a string at "dataset"'),
    "run.json options a string": ("run.json", edit_json(lambda m: m.update(options="fpn")), 'a string at "options"'),
    "comparison metrics as strings": (
        "{comparison}", edit_json(lambda c: c.update(metrics={m: "+0.01" for m in c["metrics"]})),
        'a string at "metrics.'),
    "comparison differences as strings": ("{comparison}", edit_json(each_metric("difference", "-0.004")),
                                          '.difference" where segcore writes a number'),
    "comparison most_different of strings": (
        "{comparison}", edit_json(lambda c: c.update(most_different={m: ["000050.png"] for m in c["most_different"]})),
        'a string at "most_different.'),
    # and kin: an option nested deeper than the dashboard's caches can hash (Python's recursion limit)
    "run.json options nested 600 deep": (
        "run.json", edit_json(lambda m: m["options"].update(backbone=json.loads("[" * 600 + "]" * 600))),
        f"more than {schemas.MAX_DEPTH} levels deep"),
}


def damaged_copy(run: Path, out: Path, file: str, how, *, name: str | None = None) -> Path:
    """``run`` hard-linked to ``out`` (only read, or replaced by rename), with ``file`` a file of its own, damaged
    by ``how``; its run.json names it ``name`` where given."""
    shutil.copytree(run, out, copy_function=os.link, ignore=shutil.ignore_patterns(".*"))
    if name is not None:
        runs.write_json(out / runs.RUN_FILE, {**runs.read_run(out), "name": name})  # a new file, by rename
    target = out / file
    own = target.read_bytes()
    target.unlink()  # never write through a link into the run it came from
    target.write_bytes(own)
    how(target)
    return out


WRONG_SHAPE_INSIDE = ("valid files of the wrong shape inside, the red team's 13 (metrics.json's sections, curves.json, "
                      "CSV columns, run.json's dataset and options, a comparison's entries) and kin (an option nested "
                      "600 deep, an attention run's per_instance.csv without attention_focus)",
                      "listed as damaged, naming the file and the field")


@pytest.mark.hardening(5, *WRONG_SHAPE_INSIDE)
@pytest.mark.parametrize("damage", list(NAMED))
def test_check_run_names_the_file_and_the_field(shipped_run, tmp_path, damage):
    template, how, words = NAMED[damage]
    file = template.format(eval=EVAL, comparison=COMPARISON)
    run = damaged_copy(shipped_run, tmp_path / "maskrcnn", file, how)
    found = run_health.check_run(run)
    assert list(found) == [file], found
    assert str(run / file) in found[file] and words in found[file], found[file]
    with pytest.raises(SegcoreError) as refused:
        READERS[file](run)
    assert str(refused.value) == found[file]


@pytest.mark.hardening(5, *WRONG_SHAPE_INSIDE)
def test_an_attention_runs_per_instance_without_its_focus_is_named(dashboard_runs, tmp_path):
    # the Leaderboard draws an attention model's focus from per_instance.csv's attention_focus
    file = f"{PAGE_EVAL}/per_instance.csv"
    run = damaged_copy(dashboard_runs / "maskrcnn", tmp_path / "maskrcnn", file,
                       edit_table(lambda t: t.drop(columns=["attention_focus"])))
    assert "attention" in runs.read_metrics(run / PAGE_EVAL)
    found = run_health.check_run(run)
    assert list(found) == [file] and str(run / file) in found[file] and "attention_focus" in found[file], found


# ---- the pages, over runs damaged in each of those ways among good ones ----

#: The runs of dashboard_runs that are whole, by their names in run.json ("tiny" is the folder maskrcnn).
WHOLE = ["fcn", "imported", "tiny"]


@pytest.fixture(scope="module")
def damaged_runs(dashboard_runs, shapes, tmp_path_factory) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A runs folder: dashboard_runs' runs, whole, and one copy of its Mask R-CNN run per NAMED damage, called
    "broken-NN"; and the broken runs' names -> (the damaged file, words naming the field)."""
    root = tmp_path_factory.mktemp("damaged") / "runs"
    # what other tests may have added to the shared runs (test_dashboard evaluates one on the test split)
    skip = shutil.ignore_patterns("comparisons", ".*", "*-test")
    for run in dashboard_runs.iterdir():
        shutil.copytree(run, root / run.name, ignore=skip, copy_function=os.link)
    compared = root.parent / "compared"  # the Mask R-CNN run as B of a comparison with the FCN, outside root
    shutil.copytree(root / "maskrcnn", compared, copy_function=os.link)
    compare_runs(root / "fcn", root / "maskrcnn", shapes, "val", resamples=20, out=compared / PAGE_COMPARISON,
                 progress=False)
    broken = {}
    for i, (template, how, words) in enumerate(NAMED.values()):
        file = template.format(eval=PAGE_EVAL, comparison=PAGE_COMPARISON)
        name = f"broken-{i:02d}"
        damaged_copy(compared if file == PAGE_COMPARISON else root / "maskrcnn", root / name, file, how, name=name)
        broken[name] = (file, words)
    return root, broken


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


@pytest.mark.hardening(5, "runs damaged inside valid files (the 14 named above) among good ones, on the Overview, "
                          "Leaderboard, Browse and Compare pages",
                       "no exception; each damaged file is named with its field; the good runs show")
def test_the_pages_name_each_file_damaged_inside_and_show_the_good_runs(damaged_runs, monkeypatch):
    root, broken = damaged_runs
    monkeypatch.chdir(root.parent)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=300).run()
    assert not app.exception and not app.error, texts(app.exception) + texts(app.error)
    # Overview: every broken run listed as damaged, with its file and field; the scoreboard has the good runs
    listing = app.dataframe[-1].value.set_index("path")
    for name, (file, words) in broken.items():
        row = listing.loc[str(Path("runs") / name)]
        assert row["status"] == "damaged" and str(Path("runs") / name / file) in row["damage"], (name, row["damage"])
        assert words in row["damage"], (name, row["damage"])
    assert set(WHOLE) <= set(app.dataframe[0].value["run"])
    # eval folders and run.json damaged: the pages showing evaluations leave those runs out, and say why
    left_out = {name: words for name, (file, words) in broken.items() if file != PAGE_COMPARISON}
    picker = app.sidebar.multiselect[0]
    picker.set_value(picker.options).run()
    for page in ("app_pages/leaderboard.py", "app_pages/browse.py", "app_pages/compare.py"):
        app.switch_page(page).run()
        assert not app.exception and not app.error, (page, texts(app.exception) + texts(app.error))
        for name, (file, words) in broken.items():
            assert any(f"{name} is damaged" in w and words in w for w in texts(app.sidebar.warning)), (page, name)
        for name, words in left_out.items():
            assert any(f"{name} is left out" in w and words in w for w in texts(app.main.warning)), (page, name)
        if page.endswith("leaderboard.py"):
            shown = set(app.dataframe[0].value["run"])
            assert set(WHOLE) <= shown and not shown & set(left_out) and len(app.get("plotly_chart")) >= 6
        elif page.endswith("browse.py"):
            options = {Path(path).name for path in app.selectbox(key="browse_run").options}
            assert app.get("image") and not options & set(left_out)
    # Compare: a damaged comparison is named, and can be made again
    for name, (file, words) in broken.items():
        if file == PAGE_COMPARISON:
            app.selectbox(key="compare_a").set_value(str(Path("runs") / "fcn")).run()
            app.selectbox(key="compare_b").set_value(str(Path("runs") / name)).run()
            assert not app.exception and not app.error, texts(app.exception) + texts(app.error)
            assert any(str(Path("runs") / name / file) in w and words in w for w in texts(app.main.warning)), name
            assert "compare_button" in [b.key for b in app.button]
