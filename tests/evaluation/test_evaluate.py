"""``segcore eval``: a run's eval folder end to end, and other tools' results files scored exactly."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segcore.cli import main
from segcore.evaluation.evaluate import evaluate_run
from segcore.metrics.coco import STAT_NAMES
from segcore.training.config import TrainConfig
from segcore.training.loop import train
from tests.conftest import TINY_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "coco-val2014-100"
GT = FIXTURE / "instances_val2014_100.json"


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def pycocotools_stats(iou_type: str, results: Path) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GT))
        evaluator = COCOeval(gt, gt.loadRes(str(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


@pytest.fixture(scope="module")
def run_eval(tiny_run, shapes):
    return evaluate_run(tiny_run, shapes, "val", progress=False)


def test_a_run_eval_folder_has_every_file_and_section(run_eval, shapes):
    assert run_eval.name == f"{shapes.name}-val"
    for name in ("metrics.json", "predictions.json", "per_image.csv", "per_instance.csv", "curves.json"):
        assert (run_eval / name).is_file(), name
    metrics = json.loads((run_eval / "metrics.json").read_text())
    for section in ("segm", "bbox"):
        assert set(STAT_NAMES) <= set(metrics[section]) and "per_class" in metrics[section]
    assert {"mIoU", "pixel_accuracy", "per_class_iou"} <= set(metrics["semantic"])
    assert {"AP", "mean_iou"} <= set(metrics["boundary"])
    speed = metrics["speed"]
    assert {"device", "preprocess_ms_p50", "model_ms_p50", "postprocess_ms_p50", "model_ms_p90", "postprocess_ms_p90",
            "total_ms_p50", "params",
            "flops"} <= set(speed)
    assert speed["params"] > 0 and speed["flops"] > 0
    assert metrics["n_images"] == 4 and metrics["occlusion_source"].startswith("annotation")


def test_per_image_and_per_instance_tables(run_eval):
    per_image = read_csv(run_eval / "per_image.csv")
    assert len(per_image) == 4
    assert {"image_id", "file_name", "tp", "fp", "fn", "semantic_miou", "pixel_accuracy"} <= set(per_image[0])
    per_instance = read_csv(run_eval / "per_instance.csv")
    assert {"image_id", "gt_id", "pred_id", "category", "score", "iou", "boundary_iou", "area_bucket", "occlusion",
            "error_type"} <= set(per_instance[0])


def test_predictions_are_coco_results_with_rle_strings(run_eval):
    results = json.loads((run_eval / "predictions.json").read_text())
    assert results and all(isinstance(r["segmentation"]["counts"], str) for r in results)


@pytest.mark.skipif(not GT.exists(), reason="the shared COCO fixture is not beside the repository")
@pytest.mark.parametrize("iou_type, results", [
    ("segm", FIXTURE / "instances_val2014_fakesegm100_results.json"),
    ("bbox", FIXTURE / "instances_val2014_fakebbox100_results.json"),
])
def test_another_tools_results_give_pycocotools_numbers_exactly(iou_type, results, tmp_path):
    assert main(["eval", "--gt", str(GT), "--predictions", str(results), "--out", str(tmp_path / "ext"),
                 "--name", "fake"]) == 0
    manifest = json.loads((tmp_path / "ext" / "run.json").read_text())
    assert manifest["kind"] == "external" and manifest["name"] == "fake"
    [folder] = (tmp_path / "ext" / "evals").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [metrics[iou_type][k] for k in STAT_NAMES] == pycocotools_stats(iou_type, results)
    # a box-only file gives box metrics only
    assert ("segm" in metrics) == (iou_type == "segm")
    assert metrics["occlusion_source"].startswith("largest box overlap")


@pytest.mark.skipif(not GT.exists(), reason="the shared COCO fixture is not beside the repository")
def test_scoring_a_results_file_does_not_import_torch(tmp_path):
    code = ("import sys; from segcore.cli import main; "
            f"main(['eval', '--gt', r'{GT}', "
            f"'--predictions', r'{FIXTURE / 'instances_val2014_fakebbox100_results.json'}', "
            f"'--out', r'{tmp_path / 'ext'}']); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr[-2000:]


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory):
    """The fixture as a dataset folder, its fake results as external run A, and a worse copy as run B."""
    if not GT.exists():
        pytest.skip("the shared COCO fixture is not beside the repository")
    root = tmp_path_factory.mktemp("compare")
    (root / "coco" / "annotations").mkdir(parents=True)
    (root / "coco" / "annotations" / "instances_val.json").write_bytes(GT.read_bytes())
    results = json.loads((FIXTURE / "instances_val2014_fakesegm100_results.json").read_text())
    worse = root / "worse.json"
    # every other detection dropped: fewer true positives on most images
    worse.write_text(json.dumps(results[::2]))
    gt = root / "coco" / "annotations" / "instances_val.json"
    for name, path in (("a", FIXTURE / "instances_val2014_fakesegm100_results.json"), ("b", worse)):
        assert main(["eval", "--gt", str(gt), "--predictions", str(path), "--out", str(root / name)]) == 0
    return root


def test_compare_gives_paired_intervals_and_the_most_different_images(fixture_runs):
    root = fixture_runs
    assert main(["compare", str(root / "a"), str(root / "b"), "--data", str(root / "coco"), "--split", "val",
                 "--resamples", "200"]) == 0
    [path] = (root / "b" / "comparisons").iterdir()
    comparison = json.loads(path.read_text())
    mask_ap = comparison["metrics"]["mask_AP"]
    assert mask_ap["b"] < mask_ap["a"] and mask_ap["low"] <= mask_ap["difference"] <= mask_ap["high"]
    assert mask_ap["high"] < 0  # dropping half the detections is a real loss, not noise
    assert {"box_AP", "f1"} <= set(comparison["metrics"])
    assert comparison["most_different"]["f1"][0]["file_name"].endswith(".jpg")


def test_a_run_compared_with_itself_differs_by_nothing(fixture_runs):
    root = fixture_runs
    out = root / "same.json"
    assert main(["compare", str(root / "a"), str(root / "a"), "--data", str(root / "coco"), "--split", "val",
                 "--resamples", "100", "--out", str(out)]) == 0
    mask_ap = json.loads(out.read_text())["metrics"]["mask_AP"]
    assert mask_ap["difference"] == mask_ap["low"] == mask_ap["high"] == 0.0


@pytest.mark.parametrize("resamples", ["0", "-5"])
def test_a_bootstrap_without_resamples_is_one_sentence(fixture_runs, resamples, capsys):
    root = fixture_runs
    assert main(["compare", str(root / "a"), str(root / "b"), "--data", str(root / "coco"), "--split", "val",
                 "--resamples", resamples, "--out", str(root / "none.json")]) == 2
    error = capsys.readouterr().err
    assert "resamples must be a whole number of at least 1" in error and "Traceback" not in error
    assert not (root / "none.json").exists()


def test_breakdowns_give_ap_and_mean_iou_by_area_occlusion_and_objects(run_eval):
    breakdowns = json.loads((run_eval / "metrics.json").read_text())["breakdowns"]
    assert set(breakdowns["occlusion"]) == {"0", "0-0.25", "0.25-0.5", ">0.5"}
    assert set(breakdowns["objects_per_image"]) == {"1-3", "4-8", "9+"}
    mean_iou = breakdowns["mean_iou"]
    assert set(mean_iou) == {"area", "occlusion", "objects_per_image"}
    assert set(mean_iou["area"]) == {"small", "medium", "large"}
    values = [v for group in mean_iou.values() for v in group.values() if v is not None]
    assert values and all(0.0 <= v <= 1.0 for v in values)


def test_compare_two_trained_runs_of_different_families(tiny_run, shapes, tmp_path):
    # An FCN against the Mask R-CNN run: the FCN is evaluated on the way (AP from its connected components).
    fcn = train(TrainConfig(model="fcn", data=str(shapes), out=str(tmp_path / "fcn"), max_iters=2, batch_size=2,
                            model_options=TINY_OPTIONS["fcn"]), progress=False)
    assert main(["compare", str(tiny_run), str(fcn), "--data", str(shapes), "--split", "val", "--no-progress"]) == 0
    [path] = (fcn / "comparisons").iterdir()
    comparison = json.loads(path.read_text())
    assert comparison["resamples"] == 1000 and comparison["b"]["eval"].startswith(str(fcn))
    for metric in ("mask_AP", "box_AP", "semantic_miou", "pixel_accuracy", "f1"):
        interval = comparison["metrics"][metric]
        assert interval["low"] <= interval["difference"] <= interval["high"], metric
    assert len(comparison["most_different"]["semantic_miou"]) == 4  # every image of the split, most different first


def test_a_mask_model_that_finds_nothing_scores_zero_mask_ap(shapes, tmp_path):
    from segcore.evaluation.scoring import load_ground_truth, write_eval_folder

    coco_gt = load_ground_truth(shapes / "annotations" / "instances_val.json")
    names = [coco_gt.cats[i]["name"] for i in sorted(coco_gt.getCatIds())]
    folder = write_eval_folder(tmp_path / "empty", coco_gt=coco_gt, results=[], class_names=names, name="empty",
                               masks=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["segm"]["AP"] == 0.0 and metrics["bbox"]["AP"] == 0.0 and "boundary" in metrics


def test_importing_results_never_overwrites_a_trained_run(tiny_run, shapes, tmp_path, capsys):
    target = tmp_path / "trained"
    shutil.copytree(tiny_run, target)
    results = tmp_path / "results.json"
    results.write_text("[]")
    assert main(["eval", "--gt", str(shapes / "annotations" / "instances_val.json"), "--predictions", str(results),
                 "--out", str(target)]) == 2
    assert "holds a trained run" in capsys.readouterr().err
    assert json.loads((target / "run.json").read_text())["kind"] == "trained"


def test_a_dataset_numbering_its_categories_otherwise_is_scored_by_class(tiny_run, shapes, tmp_path):
    """The same classes under other category ids (as a re-exported COCO file may give them): the model's
    labels are mapped to this dataset's ids, not to those of the dataset it was trained on."""
    renumbered = tmp_path / "shapes"
    shutil.copytree(shapes, renumbered)
    for split in ("val", "test", "train"):
        path = renumbered / "annotations" / f"instances_{split}.json"
        content = json.loads(path.read_text())
        for category in content["categories"]:
            category["id"] *= 10
        for annotation in content["annotations"]:
            annotation["category_id"] *= 10
        path.write_text(json.dumps(content))
    scores = []
    for data, name in ((shapes, "a"), (renumbered, "b")):
        run = tmp_path / name
        shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("evals", "comparisons"))
        scores.append(json.loads((evaluate_run(run, data, "val", progress=False, speed_images=2)
                                  / "metrics.json").read_text()))
    for section in ("segm", "bbox"):
        assert scores[1][section]["AP"] == scores[0][section]["AP"] and scores[0][section]["AP"] is not None
    predictions = json.loads((tmp_path / "b" / "evals" / "shapes-val" / "predictions.json").read_text())
    assert predictions and all(entry["category_id"] % 10 == 0 for entry in predictions)
