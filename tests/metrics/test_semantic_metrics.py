"""Semantic metrics from a confusion matrix, against a case computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segcore.metrics.semantic import confusion_matrix, semantic_scores


def test_a_hand_computed_case():
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    predicted = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [2, 1, 2, 2]])
    matrix = confusion_matrix(predicted, target, num_classes=3)
    # ignored pixels (255) are not counted: 10 pixels
    assert matrix.tolist() == [[3, 1, 0], [1, 3, 0], [0, 1, 1]]
    scores = semantic_scores(matrix, ["background", "a", "b"])
    # IoU: background 3/(4+4-3)=0.6, a 3/(4+5-3)=0.5, b 1/(2+1-1)=0.5
    assert scores["per_class_iou"] == pytest.approx({"background": 0.6, "a": 0.5, "b": 0.5})
    assert scores["mIoU"] == pytest.approx((0.6 + 0.5 + 0.5) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(7 / 10)
    assert scores["mean_class_accuracy"] == pytest.approx((3 / 4 + 3 / 4 + 1 / 2) / 3)


def test_a_class_absent_everywhere_is_left_out_of_the_mean():
    target = predicted = np.zeros((2, 2), dtype=np.int64)
    scores = semantic_scores(confusion_matrix(predicted, target, num_classes=3))
    assert scores["mIoU"] == 1.0 and math.isnan(scores["per_class_iou"]["2"])


def test_no_pixels_gives_nan_not_a_made_up_score():
    scores = semantic_scores(np.zeros((3, 3), dtype=np.int64))
    assert math.isnan(scores["mIoU"]) and math.isnan(scores["pixel_accuracy"])
