"""Boundary IoU against hand-computed geometry and the official definition; boundary AP."""

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
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segcore.metrics.boundary import boundary_iou, boundary_iou_matrix, boundary_mask, boundary_metrics, dilation_pixels
from segcore.metrics.coco import STAT_NAMES, coco_metrics

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "coco-val2014-100"


def square(top: int, left: int, size: int, shape=(100, 100)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top:top + size, left:left + size] = True
    return mask


def official_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """boundary-iou-api's mask_to_boundary, literally: pad one zero pixel, erode d times by a 3x3 square
    (cv2.erode's default border counts as foreground), crop, subtract."""
    h, w = mask.shape
    d = max(1, int(round(dilation_ratio * np.sqrt(h ** 2 + w ** 2))))
    eroded = np.pad(mask.astype(bool), 1)
    for _ in range(d):
        p = np.pad(eroded, 1, constant_values=True)
        eroded = np.logical_and.reduce([p[i:i + h + 2, j:j + w + 2] for i in range(3) for j in range(3)])
    return mask.astype(bool) & ~eroded[1:h + 1, 1:w + 1]


def test_dilation_is_two_percent_of_the_diagonal():
    assert dilation_pixels(640, 480) == 16  # diagonal 800
    assert dilation_pixels(100, 100) == 3   # 2.83 rounds to 3
    assert dilation_pixels(10, 10) == 1     # never below one pixel


def test_two_offset_squares_by_hand():
    # 100 x 100 image: d = 3. Two 40 x 40 squares, the second 10 columns to the right.
    a, b = square(20, 20, 40), square(20, 30, 40)
    # Each boundary is a 3-pixel frame: 40^2 - 34^2 = 444 pixels. The frames share only the top and
    # bottom 3 rows of the 30 overlapping columns (inside, one square's interior covers the other's
    # frame): 2 * 3 * 30 = 180. Boundary IoU = 180 / (444 + 444 - 180) = 15 / 59.
    assert boundary_mask(a).sum() == 444
    assert boundary_iou(a, b) == pytest.approx(15 / 59)
    assert boundary_iou(b, a) == boundary_iou(a, b)
    # Mask IoU is 1200 / 2000 = 0.6: the boundary measure is the stricter one for this shift.
    assert boundary_iou(a, b) < 0.6


def test_the_image_border_counts_as_boundary():
    full = np.ones((100, 100), bool)
    assert boundary_mask(full).sum() == 100 ** 2 - 94 ** 2  # a 3-pixel frame along the image border


def test_identical_disjoint_and_empty_masks():
    a = square(10, 10, 30)
    assert boundary_iou(a, a) == 1.0
    assert boundary_iou(a, square(60, 60, 30)) == 0.0
    empty = np.zeros_like(a)
    assert boundary_iou(empty, empty) == 1.0  # documented: nothing to disagree on
    assert boundary_iou(a, empty) == boundary_iou(empty, a) == 0.0
    assert not boundary_mask(empty).any()


masks = st.integers(1, 24).flatmap(lambda h: st.integers(1, 24).flatmap(
    lambda w: st.tuples(arrays(bool, (h, w)), arrays(bool, (h, w)))))


@settings(max_examples=60, deadline=None)
@given(masks, st.sampled_from([0.02, 0.05, 0.1, 0.3]))
def test_boundary_iou_properties_and_the_official_boundary(pair, ratio):
    a, b = pair
    value = boundary_iou(a, b, ratio)
    assert 0.0 <= value <= 1.0
    assert value == boundary_iou(b, a, ratio)
    assert boundary_iou(a, a, ratio) == 1.0
    assert np.array_equal(boundary_mask(a, ratio), official_boundary(a, ratio))
    assert not (boundary_mask(a, ratio) & ~a).any()  # the boundary lies inside the mask


def encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_matrix_equals_pairwise_boundary_iou():
    gts = [square(10, 10, 30), square(50, 40, 40), square(0, 0, 100)]
    dts = [square(12, 12, 30), square(55, 45, 30), square(80, 80, 5)]
    matrix = boundary_iou_matrix([encode(m) for m in dts], [encode(m) for m in gts])
    assert matrix.shape == (3, 3)
    for i, dt in enumerate(dts):
        for j, gt in enumerate(gts):
            assert matrix[i, j] == pytest.approx(boundary_iou(gt, dt))
    assert boundary_iou_matrix([], [encode(gts[0])]).shape == (0, 1)


def scene() -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(0)
    images, annotations, results = [], [], []
    for image_id in (1, 2, 3):
        images.append({"id": image_id, "height": 64, "width": 80})
        for _ in range(4):
            mask = square(int(rng.integers(0, 40)), int(rng.integers(0, 50)), int(rng.integers(4, 30)), (64, 80))
            category = int(rng.integers(1, 3))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "segmentation": encode(mask), "area": float(mask.sum()),
                                "bbox": mask_utils.toBbox(encode(mask)).tolist(), "iscrowd": int(rng.random() < 0.1)})
            for _ in range(2):
                shifted = np.roll(mask, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
                results.append({"image_id": image_id, "category_id": category, "score": round(float(rng.random()), 1),
                                "segmentation": encode(shifted)})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, results


def coco_from(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class _BoundaryReference(COCOeval):
    """pycocotools COCOeval with the official boundary-iou-api's IoU: min(mask, boundary), crowd: mask."""

    def computeIoU(self, imgId, catId):
        ious = super().computeIoU(imgId, catId)
        if len(ious) == 0:
            return ious
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        dt = [dt[i] for i in np.argsort([-d["score"] for d in dt], kind="mergesort")][:self.params.maxDets[-1]]
        boundary = boundary_iou_matrix([d["segmentation"] for d in dt], [g["segmentation"] for g in gt])
        regular = np.array([not g["iscrowd"] for g in gt])
        ious[:, regular] = np.minimum(ious[:, regular], boundary[:, regular])
        return ious


def test_boundary_ap_is_cocoeval_with_the_official_iou():
    dataset, results = scene()
    gt = coco_from(dataset)
    reference = _BoundaryReference(gt, gt.loadRes(copy.deepcopy(results)), "segm")
    with contextlib.redirect_stdout(io.StringIO()):
        reference.evaluate(), reference.accumulate(), reference.summarize()
    metrics = boundary_metrics(coco_from(dataset), results)
    assert [-1.0 if metrics[n] is None else metrics[n] for n in STAT_NAMES] == list(reference.stats)
    assert set(metrics["per_class"]) == {"a", "b"}
    assert 0.0 < metrics["mean_iou"] <= 1.0
    mask_ap = coco_metrics(coco_from(dataset), results, "segm")["AP"]
    assert metrics["AP"] <= mask_ap  # min(mask IoU, boundary IoU) can only lower the AP


def test_boundary_metrics_without_detections():
    dataset, _ = scene()
    metrics = boundary_metrics(coco_from(dataset), [])
    assert metrics["AP"] == 0.0 and metrics["mean_iou"] is None


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"the COCO fixture is not at {FIXTURES}")
def test_fixture_boundary_ap_agrees_with_faster_coco_eval():
    """faster-coco-eval implements the official boundary AP independently (C++ boundaries); its
    accumulation differs from pycocotools in the last bit, hence the tolerance."""
    faster = pytest.importorskip("faster_coco_eval")
    gt_path = FIXTURES / "instances_val2014_100.json"
    results_path = FIXTURES / "instances_val2014_fakesegm100_results.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
    metrics = boundary_metrics(gt, json.loads(results_path.read_text()))
    fgt = faster.COCO(str(gt_path))
    evaluation = faster.COCOeval_faster(fgt, fgt.loadRes(str(results_path)), "boundary", print_function=lambda *a: None)
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert [metrics[n] for n in STAT_NAMES] == pytest.approx(list(evaluation.stats[:12]), abs=1e-12)
