"""Boundary IoU and boundary AP (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021), with the paper's dilation of 0.02 of the image diagonal.

The definitions follow the official implementation (github.com/bowenc0221/boundary-iou-api):

- ``boundary_utils.mask_to_boundary``: the boundary of a mask is the mask minus its erosion by
  d = max(1, round(dilation_ratio * image diagonal)) pixels, eroding with a 3x3 square d times after
  padding the image with one row and column of zeros, so a mask cut by the image border has a boundary
  along that border too. Eroding d times by a 3x3 square equals eroding once by a (2d+1)x(2d+1) square
  with everything outside the image counted as background, which is what :func:`boundary_mask` does,
  with cumulative sums in numpy (no OpenCV, no scipy: scipy.ndimage alone takes longer to import than a
  whole COCO evaluation).
- ``coco_instance_api/cocoeval.py`` with ``iouType="boundary"``: the IoU used to match a detection to a
  ground truth is min(mask IoU, boundary IoU); crowd regions keep COCO's mask IoU. Boundary AP is COCO's
  AP (IoU .50:.95, 101 recall points) under that IoU, and here it runs through the same COCO engine as
  mask AP (:mod:`segcore.metrics.coco`), so matching and accumulation are COCO's own.

Boundaries are computed on each mask's bounding box only; the result is the same as on the whole image
because the erosion only looks (2d+1) pixels around a mask pixel and everything outside the box is
background, inside the image or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from segcore.metrics import coco as coco_engine
from segcore.rle import decode_compressed_counts

DILATION_RATIO = 0.02


def dilation_pixels(height: int, width: int, dilation_ratio: float = DILATION_RATIO) -> int:
    """The boundary width d in pixels for an image: max(1, round(dilation_ratio * diagonal))."""
    return max(1, int(round(dilation_ratio * math.sqrt(height ** 2 + width ** 2))))


def _erode_rows(mask: np.ndarray, d: int) -> np.ndarray:
    """(h, w) bool: a pixel stays if the d pixels above and below it are set too (outside: unset)."""
    n, window = mask.shape[0], 2 * d + 1
    padding = np.zeros((d, mask.shape[1]), dtype=bool)
    covered = np.concatenate([padding, mask, padding])
    # covered[s] = AND of `span` consecutive rows from s; doubling the span costs one AND each time.
    span = 1
    while span * 2 <= window:
        covered = covered[:-span] & covered[span:]
        span *= 2
    return covered[:n] & covered[window - span:window - span + n]  # two overlapping spans cover the window


def _erode(mask: np.ndarray, d: int) -> np.ndarray:
    """(h, w) bool -> (h, w) bool: erosion by a (2d+1) square, pixels outside the array counted as 0."""
    return _erode_rows(_erode_rows(mask, d).T, d).T


def boundary_mask(mask: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> np.ndarray:
    """The inner boundary band of a mask: (H, W) bool -> (H, W) bool.

    The band holds the mask pixels within d = :func:`dilation_pixels` (Chebyshev distance) of the
    background or of the image border; an empty mask has an empty boundary.
    """
    mask = np.asarray(mask).astype(bool)
    assert mask.ndim == 2, mask.shape
    d = dilation_pixels(*mask.shape, dilation_ratio)
    boundary = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size:
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        boundary[box] = mask[box] & ~_erode(mask[box], d)
    return boundary


def boundary_iou(gt: np.ndarray, dt: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> float:
    """Boundary IoU |Bg ∩ Bd| / |Bg ∪ Bd| of two (H, W) masks of the same image, in [0, 1].

    Two empty masks agree perfectly and score 1.0; one empty mask against a non-empty one scores 0.0.
    The score is symmetric in its arguments.
    """
    assert np.shape(gt) == np.shape(dt), (np.shape(gt), np.shape(dt))
    gt_boundary, dt_boundary = boundary_mask(gt, dilation_ratio), boundary_mask(dt, dilation_ratio)
    union = np.count_nonzero(gt_boundary | dt_boundary)
    return 1.0 if union == 0 else np.count_nonzero(gt_boundary & dt_boundary) / union


@dataclass(frozen=True)
class _CroppedBoundary:
    """A boundary band stored on its mask's bounding box: rows top.., columns left.. of the image."""

    top: int
    left: int
    band: np.ndarray  # (h, w) bool
    area: int


def _cropped_boundaries(rles: list[dict], dilation_ratio: float) -> list[_CroppedBoundary | None]:
    """Boundary bands of compressed RLE masks (counts str or bytes); None for an empty mask.

    Decodes only the columns each mask spans, straight from its runs, instead of the whole image.
    """
    runs, starts, valid = decode_compressed_counts([rle["counts"] for rle in rles])
    assert valid.all(), "masks reaching the metrics are validated RLE"
    out: list[_CroppedBoundary | None] = []
    for i, rle in enumerate(rles):
        height, width = (int(v) for v in rle["size"])
        mask_runs = runs[starts[i]:starts[i + 1]]
        ends = np.cumsum(mask_runs)
        foreground = np.flatnonzero(mask_runs[1::2]) * 2 + 1
        if foreground.size == 0:
            out.append(None)
            continue
        col0 = int(ends[foreground[0]] - mask_runs[foreground[0]]) // height
        col1 = int(ends[foreground[-1]] - 1) // height
        # the runs clipped to columns col0..col1, expanded to pixels (runs alternate 0, 1, 0, ...)
        clipped = np.diff(np.clip(np.concatenate([[0], ends]), col0 * height, (col1 + 1) * height))
        pixels = np.repeat(np.arange(clipped.size) % 2 == 1, clipped)
        columns = pixels.reshape(col1 - col0 + 1, height).T  # RLE runs go down the columns
        rows = np.flatnonzero(columns.any(1))
        mask = columns[rows[0]:rows[-1] + 1]
        band = mask & ~_erode(mask, dilation_pixels(height, width, dilation_ratio))
        out.append(_CroppedBoundary(int(rows[0]), col0, band, int(np.count_nonzero(band))))
    return out


def _cropped_iou(a: _CroppedBoundary | None, b: _CroppedBoundary | None) -> float:
    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    top, left = max(a.top, b.top), max(a.left, b.left)
    bottom = min(a.top + a.band.shape[0], b.top + b.band.shape[0])
    right = min(a.left + a.band.shape[1], b.left + b.band.shape[1])
    inter = 0
    if bottom > top and right > left:
        inter = int(np.count_nonzero(a.band[top - a.top:bottom - a.top, left - a.left:right - a.left]
                                     & b.band[top - b.top:bottom - b.top, left - b.left:right - b.left]))
    return inter / (a.area + b.area - inter)


def _boundary_ious(dt_bands: list, gt_bands: list, overlapping: np.ndarray) -> np.ndarray:
    ious = np.zeros(overlapping.shape)
    for i, j in zip(*np.nonzero(overlapping)):
        ious[i, j] = _cropped_iou(dt_bands[i], gt_bands[j])
    return ious


def boundary_iou_matrix(dt_rles: list[dict], gt_rles: list[dict],
                        dilation_ratio: float = DILATION_RATIO) -> np.ndarray:
    """Boundary IoU of every detection against every ground truth of one image.

    Args:
        dt_rles: D compressed RLE masks (``{"size": [H, W], "counts": str | bytes}``).
        gt_rles: G compressed RLE masks of the same image size.

    Returns:
        (D, G) float64, laid out like ``pycocotools.mask.iou(dt_rles, gt_rles, iscrowd)``. Pairs whose
        masks do not overlap score 0 without being computed (a boundary lies inside its mask).
    """
    if not dt_rles or not gt_rles:
        return np.zeros((len(dt_rles), len(gt_rles)))
    overlapping = np.asarray(mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles))) > 0
    bands = _cropped_boundaries(list(dt_rles) + list(gt_rles), dilation_ratio)
    return _boundary_ious(bands[:len(dt_rles)], bands[len(dt_rles):], overlapping)


def boundary_metrics(coco_gt, results: list[dict], *, class_names: list[str] | None = None,
                     dilation_ratio: float = DILATION_RATIO) -> dict:
    """Boundary AP and the mean boundary IoU of matched instances, for mask results.

    Args:
        coco_gt: a pycocotools ``COCO`` with the ground truth.
        results: COCO results entries with a compressed RLE ``segmentation`` each.
        class_names: names of the categories in ascending id order; default the names in ``coco_gt``.
        dilation_ratio: boundary width as a fraction of the image diagonal.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl" (COCO's 12
        numbers under IoU = min(mask IoU, boundary IoU); None where COCO would report -1, i.e. nothing to
        score), "per_class": {name: AP or None}, "mean_iou": mean boundary IoU over the pairs matched by
        mask IoU at 0.50 under COCO's rules (all areas, 100 detections per image), None if none matched}.
    """
    evaluation = coco_engine.CocoEvaluation(coco_gt, results, "segm")
    mask_matches = evaluation.match(area_ranges=[coco_engine.ALL_AREAS])
    # Boundaries only for masks that overlap something (a boundary lies inside its mask), in one batch.
    needed: list[dict] = []
    slots: list[tuple[list[int], list[int]]] = []
    for pair in evaluation.pairs:
        overlapping = pair.ious > 0
        dt_slots, gt_slots = [-1] * len(pair.dt_rles), [-1] * len(pair.gt_rles)
        for i in np.flatnonzero(overlapping.any(1)):
            dt_slots[i] = len(needed)
            needed.append(pair.dt_rles[i])
        for j in np.flatnonzero(overlapping.any(0)):
            gt_slots[j] = len(needed)
            needed.append(pair.gt_rles[j])
        slots.append((dt_slots, gt_slots))
    bands = _cropped_boundaries(needed, dilation_ratio)
    matched_iou: list[float] = []
    for pair, pair_match, (dt_slots, gt_slots) in zip(evaluation.pairs, mask_matches, slots):
        boundary = _boundary_ious([bands[s] if s >= 0 else None for s in dt_slots],
                                  [bands[s] if s >= 0 else None for s in gt_slots], pair.ious > 0)
        # mean_iou: boundary IoU of the mask-matched pairs (IoU 0.50, not ignored), before min() below.
        gt_column = {gt_id: j for j, gt_id in enumerate(pair.gt_ids)}
        for i, gt_id in enumerate(pair_match.dt_matches[0, 0]):
            if gt_id and not pair_match.dt_ignore[0, 0, i]:
                matched_iou.append(float(boundary[i, gt_column[gt_id]]))
        if pair.ious.size:
            regular = ~pair.gt_crowd
            pair.ious[:, regular] = np.minimum(pair.ious[:, regular], boundary[:, regular])
    metrics = evaluation.summary(class_names=class_names, curves=False)
    metrics["mean_iou"] = float(np.mean(matched_iou)) if matched_iou else None
    return metrics
