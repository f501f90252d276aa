"""Shared fixtures (a tiny built-in dataset and a tiny trained run, made once per session) and the hooks that
log the hardening tests for docs/hardening.py."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import settings
from pycocotools.coco import COCO

from segcore.data.synth import generate
from segcore.evaluation.evaluate import evaluate_run
from segcore.evaluation.scoring import evaluate_results
from segcore.training.config import TrainConfig
from segcore.training.loop import train

#: Real COCO annotations and results for the reader and the evaluation engine (see its README).
COCO_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "coco-val2014-100"

#: Small, fast model options for tests: images downscaled to 128 px, a narrow head.
TINY_MASKRCNN = {"min_size": 128, "max_size": 128, "fpn_channels": 32, "box_representation": 64, "mask_width": 32,
                 "mask_convs": 2, "rpn_post_nms_top_n": 100, "box_batch_size_per_image": 64}
TINY_OPTIONS = {"maskrcnn": TINY_MASKRCNN, "fcn": {"output_stride": 32}, "unet": {"depth": 3, "width": 8}}


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """The built-in dataset at its smallest: 8 train, 4 val and 2 test images of 256×256."""
    out = tmp_path_factory.mktemp("data") / "shapes"
    generate(out, seed=1, n_train=8, n_val=4, n_test=2, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_run(shapes, tmp_path_factory) -> Path:
    """A Mask R-CNN run with spatial attention trained for 4 iterations."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(model="maskrcnn", data=str(shapes), out=str(out), max_iters=4, batch_size=2, log_every=1,
                         model_options={**TINY_MASKRCNN, "attention": "spatial"})
    return train(config, progress=False)


@pytest.fixture(scope="module")
def fixture_gt() -> COCO:
    """The shared fixture's ground truth, 100 COCO val2014 images, loaded once a module (COCOeval rewrites
    its polygons as RLE in place, so modules do not share one)."""
    if not COCO_FIXTURE.exists():
        pytest.skip(f"the COCO fixture is not at {COCO_FIXTURE} (the shared fixtures sit beside the repository)")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(COCO_FIXTURE / "instances_val2014_100.json"))


@pytest.fixture(scope="session")
def dashboard_runs(tiny_run, shapes, tmp_path_factory) -> Path:
    """A runs folder for the dashboard: the tiny Mask R-CNN (with attention) and an FCN, both evaluated on
    val, an imported copy of the Mask R-CNN's predictions, and an FCN trained but not evaluated."""
    root = tmp_path_factory.mktemp("dashboard") / "runs"
    root.mkdir()
    maskrcnn = root / "maskrcnn"
    shutil.copytree(tiny_run, maskrcnn, ignore=shutil.ignore_patterns("evals", "comparisons"))
    evaluate_run(maskrcnn, shapes, "val", progress=False, speed_images=2)
    for name, evaluate in (("fcn", True), ("fresh", False)):
        run = train(TrainConfig(model="fcn", data=str(shapes), out=str(root / name), max_iters=2, batch_size=2,
                                model_options=TINY_OPTIONS["fcn"]), progress=False)
        if evaluate:
            evaluate_run(run, shapes, "val", progress=False, speed_images=2)
    evaluate_results(shapes / "annotations" / "instances_val.json",
                     maskrcnn / "evals" / f"{shapes.name}-val" / "predictions.json", root / "imported",
                     name="imported")
    return root


# ---- the hardening report: tests marked ``hardening`` (issue 6) are tabulated in README by docs/hardening.py ----

#: The issue's sections, by the number a ``hardening`` marker gives.
HARDENING_SECTIONS = {1: "Untrusted checkpoints", 2: "Images", 3: "Datasets and results files", 4: "Interrupted work",
                      5: "Dashboard under misuse and load", 6: "Fuzzing"}
_hardening_cases: list[dict] = []
_hardening_log: list[dict] = []
# docs/hardening.py runs the hypothesis tests with this profile: the same inputs each time, none replayed
settings.register_profile("hardening-report", derandomize=True, database=None)


def pytest_addoption(parser):
    parser.addoption("--hardening-log", metavar="FILE", default=None,
                     help="write each hardening test's case, outcome and number of inputs to FILE (JSON)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Count the inputs a hypothesis test runs: hypothesis looks its inner test up at each call, so a
    counting wrapper sees every example (generated, replayed and shrunk)."""
    hypothesis = getattr(getattr(item, "obj", None), "hypothesis", None)
    if hypothesis is None or item.get_closest_marker("hardening") is None:
        yield
        return
    inner, item.hardening_inputs = hypothesis.inner_test, 0

    def counted(*args, **kwargs):
        item.hardening_inputs += 1
        return inner(*args, **kwargs)

    hypothesis.inner_test = counted
    try:
        yield
    finally:
        hypothesis.inner_test = inner


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    case = _case(item)
    if case is not None and (report.when == "call" or report.outcome != "passed"):
        _hardening_log.append({**case, "outcome": report.outcome, "inputs": getattr(item, "hardening_inputs", 1)})


def _case(item) -> dict | None:
    marker = item.get_closest_marker("hardening")
    if marker is None:
        return None
    section, tried, handled = marker.args
    assert section in HARDENING_SECTIONS, (section, item.nodeid)
    return {"section": section, "title": HARDENING_SECTIONS[section], "tried": tried, "handled": handled,
            "test": item.nodeid}


def pytest_collection_modifyitems(items):
    _hardening_cases.extend(case for case in map(_case, items) if case is not None)


def pytest_sessionfinish(session):
    path = session.config.getoption("--hardening-log")
    if path:
        Path(path).write_text(json.dumps({"collected": _hardening_cases, "results": _hardening_log}, indent=1))
