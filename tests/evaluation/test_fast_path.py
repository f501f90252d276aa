"""Issue 15's fast path against the slow one and against pycocotools: ground-truth strings decoded together,
results checked inline, the box numbers and the semantic maps computed on another core."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import multiprocessing
import os
import time
from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segcore import background
from segcore.errors import DatasetError
from segcore.evaluation import scoring
from segcore.metrics.coco import STAT_NAMES

HEIGHT, WIDTH = 40, 56


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [HEIGHT, WIDTH], "counts": encoded["counts"].decode()}


def box_mask(x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y:y + h, x:x + w] = True
    return mask


def scene(tmp_path, *, empty_mask: bool = False):
    """Three images: overlapping objects, a crowd region, and (where asked) an annotation whose mask is empty;
    results with overlapping masks, duplicates and a detection on the crowd."""
    rng = np.random.default_rng(0)
    images = [{"id": i, "height": HEIGHT, "width": WIDTH, "file_name": f"{i}.png"} for i in (1, 2, 3)]
    annotations, results = [], []
    for image in images:
        for k in range(4):  # objects overlapping their neighbours
            x, y = int(rng.integers(0, 30)), int(rng.integers(0, 20))
            mask = box_mask(x, y, 18, 14)
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": 1 + k % 2,
                                "segmentation": rle(mask), "area": float(mask.sum()), "iscrowd": 0,
                                "bbox": [float(x), float(y), 18.0, 14.0]})
            for shift in (0, 2):  # found twice, once shifted: the second is a duplicate or a near miss
                found = np.roll(mask, shift, axis=1)
                results.append({"image_id": image["id"], "category_id": 1 + k % 2,
                                "score": round(float(rng.random()), 4), "segmentation": rle(found),
                                "bbox": [float(v) for v in mask_utils.toBbox(mask_utils.encode(
                                    np.asfortranarray(found.astype(np.uint8))))]})
    crowd = box_mask(0, 0, 20, 20)
    annotations.append({"id": 100, "image_id": 2, "category_id": 1, "segmentation": rle(crowd),
                        "area": float(crowd.sum()), "iscrowd": 1, "bbox": [0.0, 0.0, 20.0, 20.0]})
    results.append({"image_id": 2, "category_id": 1, "score": 0.99, "segmentation": rle(box_mask(2, 2, 10, 10)),
                    "bbox": [2.0, 2.0, 10.0, 10.0]})
    if empty_mask:
        annotations.append({"id": 101, "image_id": 3, "category_id": 2, "segmentation": rle(box_mask(0, 0, 0, 0)),
                            "iscrowd": 0, "bbox": [1.0, 1.0, 2.0, 2.0]})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": annotations,
                              "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps(results))
    return gt, predictions


def cocoeval_stats(gt, predictions, iou_type: str) -> list[float | None]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(json.loads(predictions.read_text()))), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [None if v == -1 else float(v) for v in evaluator.stats]


@pytest.mark.parametrize("cores", [1, 2])
def test_crowds_and_overlapping_masks_score_as_pycocotools_on_one_core_or_two(tmp_path, monkeypatch, cores):
    monkeypatch.setattr(background, "_cores", lambda: cores)
    gt, predictions = scene(tmp_path)
    numbers = scoring.coco_numbers(gt, predictions)
    for iou_type in ("segm", "bbox"):
        assert [numbers[iou_type][k] for k in STAT_NAMES] == cocoeval_stats(gt, predictions, iou_type)


def test_the_semantic_maps_painted_on_another_core_are_the_ones_painted_here(tmp_path, monkeypatch):
    gt, predictions = scene(tmp_path)
    folders = {}
    for cores in (1, 2):
        monkeypatch.setattr(background, "_cores", lambda cores=cores: cores)
        folders[cores] = scoring.evaluate_results(gt, predictions, tmp_path / f"run{cores}")
    one, two = (json.loads((folders[c] / "metrics.json").read_text()) for c in (1, 2))
    assert one["semantic"] == two["semantic"] and one["segm"] == two["segm"]
    assert (folders[1] / "per_image.csv").read_text() == (folders[2] / "per_image.csv").read_text()
    # predictions.json is written by the other core too
    assert (folders[1] / "predictions.json").read_text() == (folders[2] / "predictions.json").read_text()


@pytest.mark.parametrize("cores", [1, 2])
def test_scoring_that_fails_midway_leaves_no_folder_and_no_staging(tmp_path, monkeypatch, cores):
    monkeypatch.setattr(background, "_cores", lambda: cores)
    gt, predictions = scene(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("matching failed")

    monkeypatch.setattr(scoring, "match_instances", broken)
    monkeypatch.setattr(scoring, "semantic_from_results", lambda *args, **kwargs: time.sleep(60))  # the fork's part
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="matching failed"):
        scoring.evaluate_results(gt, predictions, tmp_path / "run")
    assert time.monotonic() - start < 30 and multiprocessing.active_children() == []  # the fork was stopped
    evals = tmp_path / "run" / "evals"
    assert not evals.exists() or list(evals.iterdir()) == []


def test_cancelled_work_stops_at_once_and_a_dead_worker_leaves_the_work_to_the_caller(monkeypatch):
    monkeypatch.setattr(background, "_cores", lambda: 2)
    start = time.monotonic()
    background.Background(lambda: time.sleep(60)).cancel()
    assert time.monotonic() - start < 30 and multiprocessing.active_children() == []
    here = os.getpid()
    # the worker dies without answering (as when killed for memory): the caller does the work itself
    dies = background.Background(lambda: os._exit(1) if os.getpid() != here else "done here")
    assert dies.result() == "done here"


def test_an_empty_ground_truth_mask_is_refused_or_skipped_by_name(tmp_path):
    gt, predictions = scene(tmp_path, empty_mask=True)
    with pytest.raises(DatasetError, match="annotation 101 .* covers no pixel"):
        scoring.coco_numbers(gt, predictions)
    folder = scoring.evaluate_results(gt, predictions, tmp_path / "run", skip_invalid=True)
    assert json.loads((folder / "metrics.json").read_text())["skipped"]["ground_truth"] == {"empty mask": 1}


def test_work_in_the_background_raises_its_own_error(monkeypatch):
    monkeypatch.setattr(background, "_cores", lambda: 2)

    def refuse():
        raise DatasetError("annotation 7 of gt.json is refused")

    with pytest.raises(DatasetError, match="annotation 7"):
        background.Background(refuse).result()


def test_checked_results_carry_pycocotools_mask_areas_to_the_evaluation(tmp_path):
    from segcore.coco.results import load_results
    from segcore.metrics.coco import CocoEvaluation

    gt, predictions = scene(tmp_path)
    coco_gt = scoring.load_ground_truth(gt)
    results = load_results(predictions, coco_gt)
    expected = [float(mask_utils.area({**r["segmentation"], "counts": r["segmentation"]["counts"].encode()}))
                for r in results]
    assert results.mask_areas.tolist() == expected
    assert CocoEvaluation(coco_gt, results, "segm").dt_area.tolist() == \
        CocoEvaluation(coco_gt, list(results), "segm").dt_area.tolist()


def test_a_large_file_checked_on_two_cores_gives_what_one_core_gives(tmp_path, monkeypatch):
    from segcore.coco import results as results_module

    gt, predictions = scene(tmp_path)
    bad = json.loads(predictions.read_text())
    bad[5]["segmentation"]["counts"] = bad[5]["segmentation"]["counts"][:-2]  # cut short: refused either way
    predictions.write_text(json.dumps(bad))
    coco_gt = scoring.load_ground_truth(gt)
    monkeypatch.setattr(results_module, "SPLIT_AT", 4)  # this file's 25 strings are split in two
    answers = []
    for cores in (1, 2):
        monkeypatch.setattr(background, "_cores", lambda cores=cores: cores)
        skipped = Counter()
        checked = results_module.load_results(predictions, coco_gt, skipped=skipped)
        answers.append((json.dumps(checked), checked.mask_areas.tolist(), dict(skipped)))
    assert answers[0] == answers[1] and answers[0][2] == {"invalid rle": 1}


def test_beside_other_threads_the_work_is_done_in_the_caller(monkeypatch):
    """A fork copies the locks other threads hold (the dashboard's server runs many): there, no fork."""
    import threading

    monkeypatch.setattr(background, "_cores", lambda: 2)
    with monkeypatch.context() as alone:  # as a command runs: no other thread (an earlier test may leave one)
        alone.setattr(threading, "active_count", lambda: 1)
        assert background.Background(os.getpid).result() != os.getpid()  # forked
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert background.Background(os.getpid).result() == os.getpid()  # beside a thread: here
    finally:
        stop.set()
        other.join()
