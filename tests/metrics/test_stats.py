"""Paired bootstrap over images: per-image means, re-accumulated COCO AP, most different images."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segcore.metrics.coco import RECALL_THRESHOLDS, CocoEvaluation
from segcore.metrics.stats import (
    _CategoryMatches,
    _resampled_ap,
    ap_interval,
    bootstrap_ap,
    evaluation_categories,
    most_different,
    paired_bootstrap,
    resampled_ap,
)

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "coco-val2014-100"


def evaluate(coco_gt: COCO, results: list[dict], iou_type: str = "segm") -> COCOeval:
    """COCOeval after evaluate, accumulate and summarize, quietly."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def cocoeval_resampled_ap(coco_eval: COCOeval, counts: np.ndarray) -> np.ndarray:
    """The reference: each resample's AP re-accumulated from pycocotools' own per-image matches
    (``COCOeval.evalImgs``, area "all", 100 detections), which segcore's must equal."""
    params = coco_eval.params
    n_images, n_areas, n_thresholds = len(params.imgIds), len(params.areaRng), len(params.iouThrs)
    area, max_det = params.areaRngLbl.index("all"), params.maxDets[-1]
    categories = []
    for k in range(len(params.catIds)):
        start = k * n_areas * n_images + area * n_images
        scores, image, matched, ignored = [], [], [], []
        positives = np.zeros(n_images, dtype=np.int64)
        for i, e in enumerate(coco_eval.evalImgs[start:start + n_images]):
            if e is None:
                continue
            positives[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            d = len(e["dtScores"][:max_det])
            scores.append(np.asarray(e["dtScores"][:max_det], dtype=np.float64))
            image.append(np.full(d, i))
            matched.append(np.asarray(e["dtMatches"])[:, :max_det].reshape(n_thresholds, d) != 0)
            ignored.append(np.asarray(e["dtIgnore"])[:, :max_det].reshape(n_thresholds, d).astype(bool))
        if not scores:
            empty = np.zeros((n_thresholds, 0))
            categories.append(_CategoryMatches(np.zeros(0, np.int64), empty, empty, positives))
            continue
        categories.append(_CategoryMatches.from_detections(np.concatenate(scores), np.concatenate(image),
                                                           np.concatenate(matched, axis=1),
                                                           np.concatenate(ignored, axis=1), positives))
    return _resampled_ap(categories, counts, np.asarray(params.recThrs, dtype=np.float64))


def ours(coco_eval: COCOeval) -> CocoEvaluation:
    """segcore's evaluation of the same ground truth and results as a COCOeval."""
    return CocoEvaluation(coco_eval.cocoGt, coco_eval.cocoDt.dataset["annotations"], coco_eval.params.iouType)


def box_rle(x: float, y: float, w: float, h: float, height: int, width: int) -> dict:
    encoded = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], height, width)[0]
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def random_predictions(coco_gt: COCO, seed: int, *, tied_scores: bool) -> list[dict]:
    """Jittered copies of some GT boxes, some with the wrong class, plus random boxes; masks are the boxes."""
    rng = np.random.default_rng(seed)
    category_ids = sorted(coco_gt.cats)
    results = []
    for image_id in sorted(coco_gt.imgs):
        image = coco_gt.imgs[image_id]
        height, width = image["height"], image["width"]
        boxes = [(a["bbox"], a["category_id"]) for a in coco_gt.imgToAnns[image_id] if rng.random() < 0.7]
        boxes += [([rng.uniform(0, width / 2), rng.uniform(0, height / 2), rng.uniform(4, width / 2),
                    rng.uniform(4, height / 2)], int(rng.choice(category_ids))) for _ in range(rng.integers(0, 4))]
        for (x, y, w, h), category_id in boxes:
            x, y = x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h)
            w, h = max(1.0, min(w, width - x)), max(1.0, min(h, height - y))
            if rng.random() < 0.1:
                category_id = int(rng.choice(category_ids))
            score = round(rng.random(), 1) if tied_scores else rng.random()
            results.append({"image_id": image_id, "category_id": category_id, "score": score,
                            "bbox": [x, y, w, h], "segmentation": box_rle(x, y, w, h, height, width)})
    return results


@pytest.fixture(scope="module")
def fake_segm(fixture_gt) -> COCOeval:
    return evaluate(fixture_gt, json.loads((FIXTURE / "instances_val2014_fakesegm100_results.json").read_text()))


@pytest.fixture(scope="module")
def random_segm(fixture_gt) -> COCOeval:
    return evaluate(fixture_gt, random_predictions(fixture_gt, seed=0, tied_scores=True))


def identity(coco_eval: COCOeval) -> np.ndarray:
    return np.ones((1, len(coco_eval.params.imgIds)), dtype=np.int64)


def test_identity_resample_reproduces_cocoeval_ap_on_the_fixture(fake_segm):
    assert resampled_ap(ours(fake_segm), identity(fake_segm))[0] == fake_segm.stats[0]
    assert cocoeval_resampled_ap(fake_segm, identity(fake_segm))[0] == fake_segm.stats[0]


def test_identity_resample_reproduces_cocoeval_ap_on_random_predictions_with_tied_scores(random_segm):
    assert 0 < random_segm.stats[0] < 1
    assert resampled_ap(ours(random_segm), identity(random_segm))[0] == random_segm.stats[0]


def test_identity_resample_reproduces_cocoeval_box_ap(fixture_gt):
    results = json.loads((FIXTURE / "instances_val2014_fakebbox100_results.json").read_text())
    coco_eval = evaluate(fixture_gt, results, "bbox")
    assert resampled_ap(ours(coco_eval), identity(coco_eval))[0] == coco_eval.stats[0]


def duplicated_dataset(coco_gt: COCO, results: list[dict], counts: list[int]) -> tuple[COCO, list[dict]]:
    """The dataset and results with image i present counts[i] times, under fresh ids."""
    images, anns, out = [], [], []
    for image_id, count in zip(sorted(coco_gt.imgs), counts):
        for _ in range(count):
            new_id = len(images) + 1
            images.append({**coco_gt.imgs[image_id], "id": new_id})
            anns += [{**a, "image_id": new_id, "id": len(anns) + 1 + i}
                     for i, a in enumerate(coco_gt.imgToAnns[image_id])]
            out += [{**r, "image_id": new_id} for r in results if r["image_id"] == image_id]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": list(coco_gt.cats.values())}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, out


def test_resample_with_repeats_equals_cocoeval_on_the_repeated_images(fixture_gt):
    # Scores without ties, so that the order of repeated detections is the only freedom, and it is moot.
    subset = sorted(fixture_gt.imgs)[:12]
    coco = COCO()
    coco.dataset = {"images": [fixture_gt.imgs[i] for i in subset], "categories": list(fixture_gt.cats.values()),
                    "annotations": [a for i in subset for a in fixture_gt.imgToAnns[i]]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    results = random_predictions(coco, seed=1, tied_scores=False)
    counts = [0, 2, 1, 3, 0, 1, 1, 0, 2, 1, 0, 1]
    repeated = evaluate(*duplicated_dataset(coco, results, counts))
    assert resampled_ap(ours(evaluate(coco, results)), np.array([counts]))[0] == pytest.approx(repeated.stats[0],
                                                                                              abs=1e-12)


def test_identical_models_differ_by_exactly_zero(fixture_gt, fake_segm):
    twin = evaluate(fixture_gt, json.loads((FIXTURE / "instances_val2014_fakesegm100_results.json").read_text()))
    out = bootstrap_ap(ours(fake_segm), ours(twin), resamples=200)
    assert (out["difference"], out["low"], out["high"], out["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_ap_reports_each_models_cocoeval_ap(fake_segm, random_segm):
    out = bootstrap_ap(ours(random_segm), ours(fake_segm), resamples=200)
    assert (out["a"], out["b"]) == (random_segm.stats[0], fake_segm.stats[0])
    assert out["difference"] == fake_segm.stats[0] - random_segm.stats[0]
    assert out["n_images"] == 100 and out["resamples"] == 200


def test_clearly_better_model_has_an_interval_above_zero(fixture_gt, random_segm):
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
              "segmentation": fixture_gt.annToRLE(a)} for a in fixture_gt.anns.values() if not a["iscrowd"]]
    out = bootstrap_ap(ours(random_segm), ours(evaluate(fixture_gt, truth)), resamples=200)
    assert 0 < out["low"] <= out["difference"] <= out["high"]


def test_bootstrap_ap_is_deterministic_for_a_seed(fake_segm, random_segm):
    a, b = ours(random_segm), ours(fake_segm)
    first = bootstrap_ap(a, b, resamples=100, seed=3)
    assert bootstrap_ap(a, b, resamples=100, seed=3) == first
    assert bootstrap_ap(a, b, resamples=100, seed=4)["low"] != first["low"]


def test_paired_bootstrap_of_identical_values_is_zero():
    values = np.linspace(0, 1, 20)
    out = paired_bootstrap(values, values.copy())
    assert (out["difference"], out["low"], out["high"], out["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_difference_is_b_minus_a():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.6, 50)
    out = paired_bootstrap(a, a + rng.uniform(0.05, 0.15, 50), resamples=500)
    assert 0 < out["low"] < out["difference"] < out["high"] and out["p_value"] < 0.01


def test_paired_bootstrap_is_deterministic_for_a_seed():
    a, b = np.arange(10.0), np.arange(10.0)[::-1]
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)


def test_paired_bootstrap_leaves_out_images_without_a_value():
    out = paired_bootstrap(np.array([0.5, np.nan, 0.2]), np.array([0.6, 0.9, np.nan]))
    assert out["n_images"] == 1 and out["difference"] == pytest.approx(0.1)


def test_paired_bootstrap_takes_any_statistic():
    out = paired_bootstrap(np.zeros(9), np.arange(9.0), statistic=lambda values: float(np.median(values)))
    assert out["difference"] == 4.0


def test_paired_bootstrap_without_images_is_an_error():
    with pytest.raises(ValueError, match="at least one image"):
        paired_bootstrap(np.array([]), np.array([]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=30), st.integers(0, 2 ** 16))
def test_paired_bootstrap_interval_holds_the_observed_difference(pairs, seed):
    a, b = np.array(pairs).T
    out = paired_bootstrap(a, b, resamples=200, seed=seed)
    # A percentile interval is made of resampled values, which can differ from the observed one in the
    # last bits when every resample gives the same difference.
    assert out["low"] - 1e-12 <= out["difference"] <= out["high"] + 1e-12


def test_most_different_orders_images_by_the_size_of_the_difference():
    a = {1: 0.5, 2: 0.5, 3: 0.5, 4: None, 5: 0.1}
    b = {1: 0.6, 2: 0.1, 3: 0.5, 4: 0.9}
    assert [(r["image_id"], r["difference"]) for r in most_different(a, b, k=2)] == [(2, pytest.approx(-0.4)),
                                                                                    (1, pytest.approx(0.1))]


@pytest.mark.parametrize("tied_scores", [False, True])
def test_one_models_ap_interval_from_our_evaluation_matches_cocoeval(fixture_gt, tied_scores):
    # The matches of segcore's CocoEvaluation resample exactly as pycocotools' evalImgs do.
    results = random_predictions(fixture_gt, seed=3, tied_scores=tied_scores)
    reference = evaluate(fixture_gt, results)
    evaluation = CocoEvaluation(fixture_gt, results, "segm")
    counts = np.random.default_rng(0).integers(0, 3, size=(20, len(reference.params.imgIds)))
    counts = np.concatenate([identity(reference), counts])
    expected = cocoeval_resampled_ap(reference, counts)
    assert np.array_equal(_resampled_ap(evaluation_categories(evaluation), counts, RECALL_THRESHOLDS), expected)
    assert np.array_equal(resampled_ap(evaluation, counts), expected)
    interval = ap_interval(evaluation, resamples=200)
    assert interval["mean"] == reference.stats[0]
    assert interval["low"] <= interval["mean"] <= interval["high"]


def test_ap_interval_without_ground_truth_is_empty(fixture_gt):
    empty = COCO()
    empty.dataset = {"images": [{"id": 1, "height": 4, "width": 4}], "annotations": [],
                     "categories": [{"id": 1, "name": "thing"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    assert ap_interval(CocoEvaluation(empty, [], "segm"))["mean"] is None
