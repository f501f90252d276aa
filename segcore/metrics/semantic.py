"""Semantic segmentation metrics from a confusion matrix accumulated over a split.

Accumulating one (K, K) matrix and deriving every score from it at the end keeps memory flat however
many images there are, and gives dataset-level IoU (not a mean of per-image IoUs), as the FCN and
Cityscapes protocols define it.
"""

from __future__ import annotations

import warnings

import numpy as np

from segcore.data.label_maps import IGNORE_INDEX


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


def _class_scores(true_positive: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """The scores of :func:`semantic_scores` from (..., K) float64 pixel counts per class: true
    positives, target pixels and predicted pixels; the means over the last axis."""
    union = support + predicted - true_positive
    total = support.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean over no classes: NaN, as documented
        iou = np.where(union > 0, true_positive / union, np.nan)
        class_accuracy = np.where(support > 0, true_positive / support, np.nan)
        return {"mIoU": np.nanmean(iou, axis=-1),
                "pixel_accuracy": np.where(total > 0, true_positive.sum(-1) / total, np.nan),
                "mean_class_accuracy": np.nanmean(class_accuracy, axis=-1), "iou": iou}


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
    scores = _class_scores(np.diag(matrix), matrix.sum(1), matrix.sum(0))
    names = class_names or [str(i) for i in range(len(matrix))]
    return {
        "mIoU": float(scores["mIoU"]),
        "pixel_accuracy": float(scores["pixel_accuracy"]),
        "mean_class_accuracy": float(scores["mean_class_accuracy"]),
        "per_class_iou": {name: float(value) for name, value in zip(names, scores["iou"])},
    }


def segment_scores(truth: np.ndarray, predicted: np.ndarray, lengths: np.ndarray, images: np.ndarray,
                   num_classes: int, n_images: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Confusion matrix and per-image scores of label maps given segment by segment, for many images.

    Args:
        truth, predicted: (S,) int64 class of each segment (see :func:`segcore.data.label_maps.paint_segments`).
        lengths: (S,) int64 pixels in each segment.
        images: (S,) int64 image of each segment, 0..I-1.
        num_classes: K, background included.
        n_images: I.

    Returns:
        (K, K) int64 confusion matrix summed over the images (rows target, columns predicted), and
        {"mIoU", "pixel_accuracy", "mean_class_accuracy"}: (I,) float64 each, equal to
        :func:`semantic_scores` of each image's own matrix.
    """
    pixels = lengths.astype(np.float64)  # pixel counts summed as floats stay exact below 2**53
    k = num_classes
    matrix = np.bincount(truth * k + predicted, weights=pixels, minlength=k * k).reshape(k, k).astype(np.int64)

    def per_class(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.bincount(images * k + labels, weights=weights, minlength=n_images * k).reshape(n_images, k)

    scores = _class_scores(per_class(truth, np.where(truth == predicted, pixels, 0.0)), per_class(truth, pixels),
                           per_class(predicted, pixels))
    scores.pop("iou")
    return matrix, scores
