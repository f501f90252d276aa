"""COCO metrics: identical to pycocotools' COCOeval on the real fixture and on random scenes."""

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

from segcore.coco.results import load_results
from segcore.coco.results_table import ResultsTable
from segcore.metrics import coco as coco_engine
from segcore.metrics.coco import STAT_NAMES, CocoEvaluation, breakdowns, coco_metrics

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "coco-val2014-100"
needs_fixture = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"the COCO fixture is not at {FIXTURES}")


def quiet(function, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


def coco_from(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    quiet(coco.createIndex)
    return coco


def reference(gt: COCO, results: list[dict], iou_type: str, image_ids=None, area_ranges=None) -> COCOeval:
    """Plain pycocotools, with COCOeval's -1 kept."""
    if results:
        dt = quiet(gt.loadRes, copy.deepcopy(results))
    else:  # loadRes cannot take [], so an empty detections COCO
        dt = coco_from({"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []})
    evaluation = COCOeval(gt, dt, iou_type)
    if image_ids is not None:
        evaluation.params.imgIds = sorted(image_ids)
    for name, bounds in (area_ranges or {}).items():
        evaluation.params.areaRng.append(list(bounds))
        evaluation.params.areaRngLbl.append(name)
    quiet(evaluation.evaluate)
    quiet(evaluation.accumulate)
    quiet(evaluation.summarize)
    return evaluation


def as_stats(metrics: dict) -> list[float]:
    return [-1.0 if metrics[name] is None else metrics[name] for name in STAT_NAMES]


def random_scene(seed: int, n_images: int = 6, n_categories: int = 3) -> tuple[dict, list[dict]]:
    """A small GT (rectangles and blobs, some crowd) and predictions: perturbed GT, wrong classes,
    duplicates, background detections, tied scores and one crowded image past 100 detections."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, n_images + 1):
        height, width = int(rng.choice([48, 64])), int(rng.choice([64, 80]))
        images.append({"id": image_id, "height": height, "width": width, "file_name": f"{image_id}.png"})
        for _ in range(int(rng.integers(0, 7))):
            mask = np.zeros((height, width), np.uint8)
            y, x = rng.integers(0, height - 2), rng.integers(0, width - 2)
            mask[y:y + rng.integers(2, 40), x:x + rng.integers(2, 40)] = 1
            if rng.random() < 0.3:
                mask &= rng.random((height, width)) < 0.8
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask))
            category = int(rng.integers(1, n_categories + 1))
            crowd = int(rng.random() < 0.1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                                "area": float(mask.sum()), "bbox": mask_utils.toBbox(rle).tolist(),
                                "iscrowd": crowd})
            for _ in range(int(rng.integers(0, 3))):  # perturbed copies, sometimes of the wrong class
                shifted = np.roll(mask, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
                label = category if rng.random() < 0.8 else int(rng.integers(1, n_categories + 1))
                results.append(_entry(image_id, label, shifted, round(float(rng.random()), 1)))
        for _ in range(int(rng.integers(0, 4))):  # background detections
            mask = np.zeros((height, width), np.uint8)
            y, x = rng.integers(0, height - 2), rng.integers(0, width - 2)
            mask[y:y + rng.integers(1, 20), x:x + rng.integers(1, 20)] = 1
            label = int(rng.integers(1, n_categories + 1))
            results.append(_entry(image_id, label, mask, round(float(rng.random()), 2)))
    crowded = [a for a in annotations if not a["iscrowd"]][:1]
    for ann in crowded:  # more than 100 detections on one image and category
        mask = mask_utils.decode(ann["segmentation"])
        for _ in range(110):
            shifted = np.roll(mask, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
            results.append(_entry(ann["image_id"], ann["category_id"], shifted, round(float(rng.random()), 1)))
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, n_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _entry(image_id: int, category_id: int, mask: np.ndarray, score: float) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"image_id": image_id, "category_id": category_id, "score": score,
            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
            "bbox": mask_utils.toBbox(rle).tolist()}


def for_iou_type(results: list[dict], iou_type: str) -> list[dict]:
    """What to hand pycocotools: for segm without boxes (so loadRes takes the mask area, as we do)."""
    drop = "bbox" if iou_type == "segm" else "segmentation"
    return [{k: v for k, v in r.items() if k != drop} for r in results]


@needs_fixture
@pytest.mark.parametrize("iou_type, name", [("segm", "fakesegm"), ("bbox", "fakebbox")])
def test_fixture_equals_pycocotools_exactly(iou_type, name):
    results = json.loads((FIXTURES / f"instances_val2014_{name}100_results.json").read_text())
    gt = quiet(COCO, str(FIXTURES / "instances_val2014_100.json"))
    expected = reference(gt, results, iou_type)
    gt = quiet(COCO, str(FIXTURES / "instances_val2014_100.json"))
    assert as_stats(coco_metrics(gt, results, iou_type)) == list(expected.stats)
    # and through the importer, as `segcore eval --predictions` reads the file
    imported = load_results(FIXTURES / f"instances_val2014_{name}100_results.json", gt)
    assert as_stats(coco_metrics(gt, imported, iou_type)) == list(expected.stats)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_random_predictions_equal_pycocotools_exactly(seed, iou_type):
    dataset, results = random_scene(seed)
    results = for_iou_type(results, iou_type)
    ranges = {"tiny": (0, 8 ** 2), "mid": (100, 600)}
    expected = reference(coco_from(dataset), results, iou_type, area_ranges=ranges)
    evaluation = CocoEvaluation(coco_from(dataset), results, iou_type)
    precision, recall = evaluation.accumulate(evaluation.match(
        [(0, 1e10), (0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e10), *ranges.values()]))
    assert np.array_equal(precision, expected.eval["precision"])
    assert np.array_equal(recall, expected.eval["recall"])
    metrics = coco_metrics(coco_from(dataset), results, iou_type, area_ranges=ranges)
    assert as_stats(metrics) == list(expected.stats)
    for a, name in enumerate(ranges, start=4):
        p = expected.eval["precision"][:, :, :, a, -1]
        assert metrics["area_ranges"][name] == (np.mean(p[p > -1]) if (p > -1).any() else None)
    for k, name in enumerate(metrics["per_class"]):  # Detectron2's per-class AP
        p = expected.eval["precision"][:, :, k, 0, -1]
        assert metrics["per_class"][name] == (float(np.mean(p[p > -1])) if (p > -1).any() else None)


def tied_scene(seed: int) -> tuple[dict, list[dict]]:
    """Ground truths that tie: exact copies of one another (regular and crowd), so that a detection finds
    several at the same IoU, and many detections compete for them on each image."""
    dataset, results = random_scene(seed, n_images=8)
    copies = []
    rng = np.random.default_rng(seed)
    for ann in dataset["annotations"]:
        for _ in range(int(rng.integers(0, 3))):
            copies.append(dict(ann, id=len(dataset["annotations"]) + len(copies) + 1,
                               iscrowd=int(rng.random() < 0.3)))
    dataset["annotations"] = dataset["annotations"] + copies
    for ann in copies:  # a detection equal to the copied mask: IoU 1 with every copy
        results.append(dict(image_id=ann["image_id"], category_id=ann["category_id"], score=0.5,
                            segmentation=ann["segmentation"], bbox=ann["bbox"]))
    return dataset, results


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_each_detection_matches_as_pycocotools_on_tied_ground_truths(seed, iou_type):
    """Per detection, area range and threshold: the same ground truth and ignore flag as COCOeval.evalImgs
    (the matcher runs the contested pairs in lockstep; ties go to the last ground truth, as COCO's loop)."""
    dataset, results = tied_scene(seed)
    results = for_iou_type(results, iou_type)
    expected = reference(coco_from(dataset), results, iou_type)
    evaluation = CocoEvaluation(coco_from(dataset), results, iou_type)
    assert evaluation._step_start.size > 3, "the scene should have contested pairs several detections deep"
    matches = evaluation.match()
    position = {int(index): n for n, index in enumerate(evaluation.dt_index)}
    compared = 0
    for record in expected.evalImgs:
        if record is None:
            continue
        area = [list(r) for r in expected.params.areaRng].index(list(record["aRng"]))
        columns = [position[dt_id - 1] for dt_id in record["dtIds"]]  # loadRes numbers entries from 1
        assert np.array_equal(matches.dt_matches[area][:, columns], record["dtMatches"].astype(np.int64))
        assert np.array_equal(matches.dt_ignore[area][:, columns], record["dtIgnore"].astype(bool))
        compared += len(columns)
    assert compared > 0
    assert as_stats(coco_metrics(coco_from(dataset), results, iou_type)) == list(expected.stats)


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_ious_by_pair_and_by_image_give_the_same_entries(iou_type):
    dataset, results = tied_scene(5)
    by_pair = CocoEvaluation(coco_from(dataset), results, iou_type)
    by_image = CocoEvaluation(coco_from(dataset), results, iou_type, across_categories=True)
    assert by_pair.entry_iou.size > 0 and not by_pair.image_ious and by_image.image_ious
    for name in ("entry_dt", "entry_gt", "entry_iou", "dt_best_gt", "_simple", "_step_start"):
        assert np.array_equal(getattr(by_pair, name), getattr(by_image, name)), name


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_precision_at_100_alone_is_cocoevals_last_slice_with_every_recall(iou_type):
    dataset, results = random_scene(2)
    results = for_iou_type(results, iou_type)
    expected = reference(coco_from(dataset), results, iou_type)
    evaluation = CocoEvaluation(coco_from(dataset), results, iou_type)
    precision, recall = evaluation.accumulate(evaluation.match(), precision_limits=(100,))
    assert precision.shape[-1] == 1 and (expected.eval["recall"][..., :2] > 0).any()
    assert np.array_equal(precision[..., 0], expected.eval["precision"][..., -1])
    assert np.array_equal(recall, expected.eval["recall"])  # the recall at 1 and 10 detections too


@pytest.mark.parametrize("across_categories", [False, True])
def test_box_evaluation_made_from_the_mask_one_equals_a_new_one(across_categories):
    dataset, results = tied_scene(4)  # entries with a mask and a box each, as segcore eval holds them
    derived = CocoEvaluation(coco_from(dataset), results, "segm", across_categories=across_categories).for_boxes(
        results, across_categories=across_categories)
    direct = CocoEvaluation(coco_from(dataset), results, "bbox", across_categories=across_categories)
    for name in ("dt_index", "dt_area", "entry_dt", "entry_gt", "entry_iou", "dt_best_gt", "_simple", "_step_start"):
        assert np.array_equal(getattr(derived, name), getattr(direct, name)), name
    assert derived.image_ious.keys() == direct.image_ious.keys()
    expected = reference(coco_from(dataset), for_iou_type(results, "bbox"), "bbox")
    assert as_stats(coco_metrics(coco_from(dataset), results, "bbox", evaluation=derived)) == list(expected.stats)


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_accumulation_in_row_blocks_equals_pycocotools(monkeypatch, iou_type):
    # A block of one row per detection count: every row of the cumulative counts computed on its own.
    monkeypatch.setattr(coco_engine, "ROW_BLOCK_ELEMENTS", 1)
    dataset, results = random_scene(7)
    results = for_iou_type(results, iou_type)
    expected = reference(coco_from(dataset), results, iou_type)
    evaluation = CocoEvaluation(coco_from(dataset), results, iou_type)
    precision, recall = evaluation.accumulate(evaluation.match())
    assert np.array_equal(precision, expected.eval["precision"])
    assert np.array_equal(recall, expected.eval["recall"])


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_results_held_as_columns_score_the_same(iou_type):
    dataset, results = random_scene(3)
    expected = reference(coco_from(dataset), for_iou_type(results, iou_type), iou_type)
    # with both mask and box in each entry, as segcore eval holds them; segm takes the mask area anyway
    assert as_stats(coco_metrics(coco_from(dataset), ResultsTable(results), iou_type)) == list(expected.stats)


@pytest.mark.parametrize("seed", range(2))
def test_image_subsets_equal_pycocotools_imgids(seed):
    dataset, results = random_scene(seed + 10)
    results = for_iou_type(results, "segm")
    evaluation = CocoEvaluation(coco_from(dataset), results, "segm")
    matches = evaluation.match()
    for subset in ({1, 2}, {3, 4, 5, 6}):
        expected = reference(coco_from(dataset), results, "segm", image_ids=subset)
        precision, _ = evaluation.accumulate(matches, subset)
        assert np.array_equal(precision, expected.eval["precision"])


class _BinReference(COCOeval):
    """pycocotools with the occlusion-bin semantics of CocoEvaluation.match(excluded_gt_ids=...)."""

    def __init__(self, gt, dt, excluded):
        super().__init__(gt, dt, "segm")
        self.excluded = excluded

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = g["ignore"] or g["id"] in self.excluded

    def evaluateImg(self, imgId, catId, aRng, maxDet):
        result = super().evaluateImg(imgId, catId, aRng, maxDet)
        ious, gts = self.ious[imgId, catId], self._gts[imgId, catId]
        if result is None or len(ious) == 0:
            return result
        overlap = np.where([bool(g["iscrowd"]) for g in gts], 0.0, ious)[:len(result["dtIds"])]
        best = overlap.argmax(1)
        attributed = (overlap.max(1) > 0) & np.array([gts[j]["id"] in self.excluded for j in best])
        result["dtIgnore"] = np.logical_or(result["dtIgnore"], (result["dtMatches"] == 0) & attributed)
        return result


def test_occlusion_bins_match_a_pycocotools_reference():
    dataset, results = random_scene(3)
    results = for_iou_type(results, "segm")
    rng = np.random.default_rng(0)
    occlusion = {a["id"]: float(rng.choice([0.0, 0.1, 0.4, 0.8])) for a in dataset["annotations"]}
    out = breakdowns(coco_from(dataset), results, "segm", occlusion=occlusion)
    for name, (low, high) in {"0": (-1, 0), "0-0.25": (0, .25), "0.25-0.5": (.25, .5), ">0.5": (.5, 2)}.items():
        excluded = {i for i, v in occlusion.items() if not low < v <= high}
        gt = coco_from(dataset)
        evaluation = _BinReference(gt, quiet(gt.loadRes, copy.deepcopy(results)), excluded)
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        quiet(evaluation.evaluate)
        quiet(evaluation.accumulate)
        p = evaluation.eval["precision"][:, :, :, 0, -1]
        assert out["occlusion"][name] == (np.mean(p[p > -1]) if (p > -1).any() else None)


def test_breakdown_bins_present_and_in_range():
    dataset, results = random_scene(5, n_images=10)
    occlusion = {a["id"]: 0.3 for a in dataset["annotations"]}
    out = breakdowns(coco_from(dataset), results, "bbox", occlusion=occlusion)
    assert list(out["occlusion"]) == ["0", "0-0.25", "0.25-0.5", ">0.5"]
    assert list(out["objects_per_image"]) == ["1-3", "4-8", "9+"]
    assert out["occlusion"]["0"] is None and out["occlusion"]["0.25-0.5"] is not None
    for value in [*out["occlusion"].values(), *out["objects_per_image"].values()]:
        assert value is None or 0.0 <= value <= 1.0


def test_per_class_keys_curves_and_area_ranges():
    dataset, results = random_scene(1)
    names = ["cat", "dog", "bird"]
    metrics = coco_metrics(coco_from(dataset), results, "segm", class_names=names, area_ranges={"tiny": (0, 256)})
    assert list(metrics["per_class"]) == names
    assert list(coco_metrics(coco_from(dataset), results, "segm")["per_class"]) == ["class1", "class2", "class3"]
    assert list(metrics["area_ranges"]) == ["tiny"]
    curves = metrics["curves"]
    assert len(curves["recall"]) == len(curves["precision"]) == len(curves["precision50"]) == 101
    assert set(curves["per_class_precision"]) == set(names)
    assert "area_ranges" not in coco_metrics(coco_from(dataset), results, "segm")


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_no_detections_scores_like_cocoeval_with_an_empty_result(iou_type):
    dataset, _ = random_scene(2)
    metrics = coco_metrics(coco_from(dataset), [], iou_type)
    assert as_stats(metrics) == list(reference(coco_from(dataset), [], iou_type).stats)
    assert metrics["AP"] == 0.0


def test_no_ground_truth_gives_none_not_minus_one():
    dataset, results = random_scene(2)
    dataset["annotations"] = []
    metrics = coco_metrics(coco_from(dataset), results, "segm")
    assert all(metrics[name] is None for name in STAT_NAMES)
    assert set(metrics["per_class"].values()) == {None}
    empty = coco_from({"images": [], "annotations": [], "categories": dataset["categories"]})
    assert coco_metrics(empty, [], "segm")["AP"] is None


@st.composite
def scenes(draw):
    """Images with non-crowd rectangles of a few classes."""
    images, annotations = [], []
    for image_id in range(1, draw(st.integers(1, 3)) + 1):
        height, width = draw(st.integers(8, 40)), draw(st.integers(8, 40))
        images.append({"id": image_id, "height": height, "width": width})
        for _ in range(draw(st.integers(0, 4))):
            y, x = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
            h, w = draw(st.integers(1, height - y)), draw(st.integers(1, width - x))
            mask = np.zeros((height, width), np.uint8)
            mask[y:y + h, x:x + w] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": draw(st.integers(1, 3)), "iscrowd": 0, "area": float(h * w),
                                "bbox": [float(x), float(y), float(w), float(h)],
                                "segmentation": {"size": [height, width], "counts": rle["counts"].decode()}})
    categories = [{"id": c, "name": str(c)} for c in (1, 2, 3)]
    return {"images": images, "annotations": annotations, "categories": categories}


@settings(max_examples=25, deadline=None)
@given(scenes(), st.sampled_from(["segm", "bbox"]), st.data())
def test_ap_is_one_when_predictions_equal_the_ground_truth(dataset, iou_type, data):
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "segmentation": a["segmentation"], "score": data.draw(st.floats(0.01, 1.0))}
               for a in dataset["annotations"]]
    metrics = coco_metrics(coco_from(dataset), results, iou_type)
    if dataset["annotations"]:
        # pycocotools' precision is tp / (tp + fp + np.spacing(1)), so perfect is 1 - 2.2e-16, not 1.0
        for name in ("AP", "AP50", "AP75", "AR100"):
            assert metrics[name] == pytest.approx(1.0, abs=1e-12)
    else:
        assert metrics["AP"] is None



@needs_fixture
def test_eval_coco_only_prints_pycocotools_numbers_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """``segcore eval --coco-only``: the fixture's mask results, checked as --predictions checks them, scored
    for masks and boxes with COCOeval's very numbers, and no file written."""
    from segcore.cli import main

    monkeypatch.chdir(tmp_path)
    gt_path = FIXTURES / "instances_val2014_100.json"
    results_path = FIXTURES / "instances_val2014_fakesegm100_results.json"
    assert main(["eval", "--gt", str(gt_path), "--predictions", str(results_path), "--coco-only"]) == 0
    printed = json.loads(capsys.readouterr().out)
    results = json.loads(results_path.read_text())
    for entry in results:  # boxes of masks that have none, as segcore's importer and Detectron2 take them
        entry.setdefault("bbox", [float(v) for v in mask_utils.toBbox(entry["segmentation"])])
    for iou_type in ("segm", "bbox"):
        expected = reference(quiet(COCO, str(gt_path)), for_iou_type(results, iou_type), iou_type)
        assert as_stats(printed[iou_type]) == list(expected.stats), iou_type
    assert not list(tmp_path.iterdir())
    assert main(["eval", "--predictions", str(results_path), "--coco-only"]) == 2
    assert "--coco-only scores a results file" in capsys.readouterr().err
