"""Properties of the mask IoU that per_instance.csv reports, on random masks (hypothesis)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools.coco import COCO

from segcore.coco.results import encode_mask
from segcore.metrics.matching import match_instances

MASKS = arrays(np.bool_, (12, 12), elements=st.booleans()).filter(lambda m: m.any())


def reported_iou(gt: np.ndarray, predicted: np.ndarray) -> float:
    """The IoU that matching reports between one ground-truth mask and one prediction of its class."""
    rle = encode_mask(gt)
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "file_name": "a.png", "height": 12, "width": 12}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "area": float(gt.sum()),
                         "bbox": [0, 0, 12, 12], "iscrowd": 0}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    result = {"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": encode_mask(predicted),
              "bbox": [0, 0, 12, 12]}
    rows = match_instances(coco, [result], with_boundary=False)
    [row] = [r for r in rows if r["pred_id"] == 0]
    return row["iou"]


@settings(max_examples=60, deadline=None)
@given(MASKS, MASKS)
def test_iou_lies_in_zero_one_and_is_symmetric(a, b):
    forward, backward = reported_iou(a, b), reported_iou(b, a)
    assert 0.0 <= forward <= 1.0
    assert forward == backward
    assert forward == (a & b).sum() / (a | b).sum()


@settings(max_examples=30, deadline=None)
@given(MASKS)
def test_iou_of_identical_masks_is_one(a):
    assert reported_iou(a, a) == 1.0
