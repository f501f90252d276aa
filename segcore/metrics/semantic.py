"""Semantic segmentation metrics from a confusion matrix accumulated over a split.

Accumulating one (K, K) matrix and deriving every score from it at the end keeps memory flat however
many images there are, and gives dataset-level IoU (not a mean of per-image IoUs), as the FCN and
Cityscapes protocols define it.
"""

from __future__ import annotations

import numpy as np

from segcore.label_maps import IGNORE_INDEX


def confusion_matrix(predicted: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Counts of (target class, predicted class) pixel pairs.

    Args:
        predicted: (H, W) integer label map (NumPy, or a CPU tensor).
        target: (H, W) integer label map; pixels equal to ``ignore_index`` are not counted.
        num_classes: K, background included.

    Returns:
        (K, K) int64 matrix, rows the target class, columns the predicted class.
    """
    predicted, target = np.asarray(predicted), np.asarray(target)
    assert predicted.shape == target.shape, (predicted.shape, target.shape)
    valid = target != ignore_index
    pairs = target[valid].astype(np.int64) * num_classes + np.clip(predicted[valid], 0, num_classes - 1)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def semantic_scores(matrix: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Per-class IoU, mIoU, pixel accuracy and mean class accuracy from a confusion matrix.

    A class absent from both the targets and the predictions has no IoU (NaN) and is left out of the
    means; with no pixels at all every score is NaN rather than a made-up 0 or 1.

    Args:
        matrix: (K, K) counts, rows target, columns predicted; class 0 is the background.
        class_names: K names; default "0".."K-1".

    Returns:
        {"mIoU", "pixel_accuracy", "mean_class_accuracy", "per_class_iou": {name: IoU}}; the means are
        over the foreground classes 1..K-1 and the background alike, as in the FCN paper.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    support = matrix.sum(1)
    union = support + matrix.sum(0) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        class_accuracy = np.where(support > 0, true_positive / support, np.nan)
        total = matrix.sum()
        pixel_accuracy = true_positive.sum() / total if total > 0 else float("nan")
    names = class_names or [str(i) for i in range(len(matrix))]

    def nanmean(values: np.ndarray) -> float:
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    return {
        "mIoU": nanmean(iou),
        "pixel_accuracy": float(pixel_accuracy),
        "mean_class_accuracy": nanmean(class_accuracy),
        "per_class_iou": {name: float(value) for name, value in zip(names, iou)},
    }
