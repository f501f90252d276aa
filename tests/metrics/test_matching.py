"""Per-instance matching, TIDE error types, per-image counts, calibration and box-overlap occlusion."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segcore.metrics.matching import (
    ERROR_TYPES,
    IGNORED,
    calibration,
    match_instances,
    occlusion_from_boxes,
    per_image_metrics,
)

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "coco-val2014-100"
CAT, DOG = 1, 2
# Three GT squares on a 64×64 image, as (category, y0, y1, x0, x1).
A = (CAT, 4, 20, 4, 20)
B = (DOG, 30, 46, 4, 20)
C = (CAT, 40, 60, 40, 60)


def rle(y0: int, y1: int, x0: int, x1: int, size: int = 64) -> dict:
    mask = np.zeros((size, size), np.uint8, order="F")
    mask[y0:y1, x0:x1] = 1
    encoded = mask_utils.encode(mask)
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def make_gt(objects: list[tuple], crowd: list[tuple] = (), images: int = 1) -> COCO:
    """A COCO ground truth of 64×64 images; the objects and crowd regions all on image 1."""
    anns = []
    for index, (category, y0, y1, x0, x1) in enumerate([*objects, *crowd]):
        iscrowd = int(index >= len(objects))
        anns.append({"id": index + 1, "image_id": 1, "category_id": category, "iscrowd": iscrowd,
                     "segmentation": rle(y0, y1, x0, x1), "area": float((y1 - y0) * (x1 - x0)),
                     "bbox": [x0, y0, x1 - x0, y1 - y0]})
    coco = COCO()
    coco.dataset = {"images": [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64}
                               for i in range(1, images + 1)],
                    "annotations": anns, "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def prediction(category: int, y0: int, y1: int, x0: int, x1: int, score: float, image_id: int = 1) -> dict:
    return {"image_id": image_id, "category_id": category, "segmentation": rle(y0, y1, x0, x1),
            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score}


def pred_rows(rows: list[dict]) -> dict[int, dict]:
    return {r["pred_id"]: r for r in rows if r["pred_id"] is not None}


@pytest.mark.parametrize("predictions, expected", [
    ([prediction(CAT, 4, 20, 4, 20, 0.9)], "true_positive"),
    ([prediction(CAT, 30, 46, 4, 20, 0.9)], "classification"),       # a cat on the dog
    ([prediction(CAT, 40, 60, 50, 64, 0.9)], "localization"),        # C shifted right, IoU 0.42
    ([prediction(CAT, 30, 46, 12, 28, 0.9)], "both"),                # shifted onto the dog, IoU 0.33
    ([prediction(CAT, 4, 20, 4, 20, 0.9), prediction(CAT, 4, 20, 4, 20, 0.8)], "duplicate"),
    ([prediction(DOG, 0, 8, 30, 40, 0.9)], "background"),            # touches nothing
], ids=["true_positive", "classification", "localization", "both", "duplicate", "background"])
def test_each_prediction_gets_its_tide_error_type(predictions, expected):
    rows = match_instances(make_gt([A, B, C]), predictions)
    assert pred_rows(rows)[len(predictions) - 1]["error_type"] == expected


def test_unmatched_ground_truth_is_missed():
    rows = match_instances(make_gt([A, B, C]), [prediction(CAT, 4, 20, 4, 20, 0.9)])
    missed = {r["gt_id"] for r in rows if r["error_type"] == "missed"}
    assert missed == {2, 3}
    assert all(r["error_type"] in ERROR_TYPES for r in rows)


def test_localization_is_tested_before_classification_as_in_tide():
    # IoU 0.2 with the cat and 0.71 with the dog: TIDE's code calls this a localization error.
    gt = make_gt([(CAT, 0, 20, 0, 20), (DOG, 0, 20, 20, 40)])
    rows = match_instances(gt, [prediction(CAT, 0, 20, 12, 40, 0.9)])
    assert pred_rows(rows)[0]["error_type"] == "localization"


def test_matched_row_carries_iou_score_area_and_boundary_iou():
    row = pred_rows(match_instances(make_gt([A, B, C]), [prediction(CAT, 4, 20, 4, 20, 0.9)]))[0]
    assert row == {"image_id": 1, "gt_id": 1, "pred_id": 0, "category": "cat", "score": 0.9, "iou": 1.0,
                   "boundary_iou": 1.0, "area_bucket": "small", "occlusion": None, "error_type": "true_positive"}


def test_unmatched_prediction_keeps_its_best_same_class_iou_and_own_area():
    row = pred_rows(match_instances(make_gt([A, B, C]), [prediction(CAT, 40, 60, 50, 64, 0.9)]))[0]
    assert row["iou"] == pytest.approx(200 / 480)
    assert row["gt_id"] is None and row["occlusion"] is None and row["boundary_iou"] is None


def test_box_matching_has_no_boundary_iou():
    rows = match_instances(make_gt([A]), [prediction(CAT, 4, 20, 4, 20, 0.9)], iou_type="bbox")
    assert pred_rows(rows)[0]["error_type"] == "true_positive"
    assert pred_rows(rows)[0]["boundary_iou"] is None


def test_prediction_on_a_crowd_region_is_ignored_not_a_false_positive():
    gt = make_gt([A], crowd=[(CAT, 30, 64, 30, 64)])
    rows = match_instances(gt, [prediction(CAT, 40, 50, 40, 50, 0.9)])
    assert pred_rows(rows)[0]["error_type"] == IGNORED
    assert per_image_metrics(rows, gt)[0]["fp"] == 0


def test_crowd_region_gets_no_row_of_its_own():
    rows = match_instances(make_gt([A], crowd=[(CAT, 30, 64, 30, 64)]), [])
    assert [r["gt_id"] for r in rows] == [1]


def test_real_object_wins_over_crowd_region():
    gt = make_gt([(CAT, 30, 50, 30, 50)], crowd=[(CAT, 30, 64, 30, 64)])
    rows = match_instances(gt, [prediction(CAT, 30, 50, 30, 50, 0.9)])
    assert pred_rows(rows)[0]["error_type"] == "true_positive"


def test_only_the_top_100_predictions_per_image_and_class_count():
    predictions = [prediction(DOG, 0, 8, 30, 40, 0.5 + i / 1000) for i in range(101)]
    rows = pred_rows(match_instances(make_gt([A]), predictions))
    assert [i for i, r in rows.items() if r["error_type"] == IGNORED] == [0]  # the lowest score


def test_occlusion_comes_from_the_annotation_or_the_override():
    gt = make_gt([A])
    gt.anns[1]["occlusion"] = 0.3
    assert match_instances(gt, [])[0]["occlusion"] == 0.3
    assert match_instances(gt, [], occlusion={1: 0.7})[0]["occlusion"] == 0.7


def test_results_on_an_unknown_image_are_refused():
    with pytest.raises(ValueError, match="image id 7"):
        match_instances(make_gt([A]), [prediction(CAT, 4, 20, 4, 20, 0.9, image_id=7)])


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_matches_agree_with_cocoeval_at_iou_half(fixture_gt, iou_type):
    name = "fakesegm" if iou_type == "segm" else "fakebbox"
    results = json.loads((FIXTURE / f"instances_val2014_{name}100_results.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(fixture_gt, fixture_gt.loadRes(copy.deepcopy(results)), iou_type)  # ids 1..N
        coco_eval.evaluate()
    expected = {}
    for e in coco_eval.evalImgs:
        if e is not None and e["aRng"] == [0, 1e10]:
            for det_id, gt_id, ignored in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0]):
                expected[det_id - 1] = IGNORED if ignored else int(gt_id) or None
    rows = pred_rows(match_instances(fixture_gt, results, iou_type=iou_type, with_boundary=False))
    got = {i: IGNORED if r["error_type"] == IGNORED else r["gt_id"] for i, r in rows.items()
           if r["category"] in {c["name"] for c in fixture_gt.cats.values()}}
    assert got == expected


def hand_scene() -> tuple[COCO, list[dict]]:
    """A: matched (0.9) and duplicated (0.8); B: a cat on the dog (0.7); C: missed; a low-score blob (0.3)."""
    gt = make_gt([A, B, C], images=2)
    return gt, match_instances(gt, [prediction(CAT, 4, 20, 4, 20, 0.9), prediction(CAT, 4, 20, 4, 20, 0.8),
                                    prediction(CAT, 30, 46, 4, 20, 0.7), prediction(DOG, 0, 8, 30, 40, 0.3)])


def test_per_image_counts_predictions_above_the_score_threshold():
    gt, rows = hand_scene()
    image = per_image_metrics(rows, gt)[0]
    assert (image["n_objects"], image["tp"], image["fp"], image["fn"]) == (3, 1, 2, 2)
    assert image["precision"] == pytest.approx(1 / 3) and image["recall"] == pytest.approx(1 / 3)
    assert image["f1"] == pytest.approx(2 / 6) and image["mean_iou"] == 1.0
    assert image["file_name"] == "1.png"


def test_per_image_lower_threshold_counts_the_low_score_blob():
    gt, rows = hand_scene()
    assert per_image_metrics(rows, gt, score_threshold=0.0)[0]["fp"] == 3


def test_image_with_nothing_to_find_and_nothing_claimed_scores_f1_one():
    gt, rows = hand_scene()
    empty = per_image_metrics(rows, gt)[1]
    assert (empty["n_objects"], empty["tp"], empty["fp"], empty["fn"], empty["f1"]) == (0, 0, 0, 0, 1.0)
    assert empty["precision"] is None and empty["recall"] is None and empty["mean_iou"] is None


def test_image_with_objects_and_no_predictions_scores_f1_zero():
    gt = make_gt([A])
    image = per_image_metrics(match_instances(gt, []), gt)[0]
    assert (image["f1"], image["recall"], image["precision"]) == (0.0, 0.0, None)


def test_calibration_bins_count_every_scored_prediction():
    _, rows = hand_scene()
    table = calibration(rows)
    assert sum(b["count"] for b in table["bins"]) == 4
    assert table["bins"][9] == {"low": 0.9, "high": 1.0, "count": 1, "mean_score": 0.9, "mean_iou": 1.0}
    assert table["bins"][8]["mean_iou"] == 0.0  # the duplicate earns nothing


def test_calibration_of_matched_only_counts_the_matched_rows():
    _, rows = hand_scene()
    table = calibration(rows, matched_only=True)
    assert sum(b["count"] for b in table["bins"]) == sum(r["error_type"] == "true_positive" for r in rows)
    assert table["expected_calibration_error"] == pytest.approx(0.1)  # score 0.9, IoU 1.0


def test_calibration_without_predictions_has_no_error():
    assert calibration([])["expected_calibration_error"] is None


def test_occlusion_from_boxes_is_the_largest_overlap_with_another_box():
    gt = make_gt([(CAT, 0, 20, 0, 20), (DOG, 0, 10, 0, 10), (CAT, 40, 50, 40, 50)])
    assert occlusion_from_boxes(gt) == {1: 0.25, 2: 1.0, 3: 0.0}


def test_occlusion_from_boxes_of_two_half_overlapping_boxes():
    gt = make_gt([(CAT, 0, 10, 0, 10), (CAT, 0, 10, 5, 15)])
    assert occlusion_from_boxes(gt) == {1: 0.5, 2: 0.5}


def test_error_counts_on_the_fixture_cover_every_row(fixture_gt):
    results = json.loads((FIXTURE / "instances_val2014_fakesegm100_results.json").read_text())
    rows = match_instances(fixture_gt, results, with_boundary=False)
    counts = Counter(r["error_type"] for r in rows)
    assert set(counts) <= {*ERROR_TYPES, IGNORED}
    assert counts["true_positive"] + counts["missed"] == sum(not a["iscrowd"] for a in fixture_gt.anns.values())


def test_mean_iou_by_bins_counts_a_missed_object_as_zero():
    from segcore.metrics.matching import mean_iou_by_bins

    rows = [
        {"image_id": 1, "gt_id": 1, "pred_id": 0, "iou": 0.8, "area_bucket": "small", "occlusion": 0.0,
         "error_type": "true_positive"},
        {"image_id": 1, "gt_id": 2, "pred_id": None, "iou": None, "area_bucket": "small", "occlusion": 0.3,
         "error_type": "missed"},
        {"image_id": 1, "gt_id": None, "pred_id": 1, "iou": 0.1, "area_bucket": "large", "occlusion": None,
         "error_type": "background"},
    ]
    bins = mean_iou_by_bins(rows, [{"image_id": 1, "n_objects": 2}])
    assert bins["area"] == {"small": pytest.approx(0.4), "medium": None, "large": None}
    assert bins["occlusion"] == {"0": 0.8, "0-0.25": None, "0.25-0.5": 0.0, ">0.5": None}
    assert bins["objects_per_image"] == {"1-3": pytest.approx(0.4), "4-8": None, "9+": None}
