"""Conversions between instance masks and semantic label maps.

Instance models answer masks; semantic models answer a label map. segcore scores both kinds on one
scoreboard, so each kind is converted to the other here, in one place used by the data layer (ground
truth), the prediction type (model outputs) and the scoring of results files. NumPy only, so that scoring
a results file needs no torch. Masks given as RLE can be painted without expanding them to pixels
(:func:`paint_segments`), which is how results files are scored.
"""

from __future__ import annotations

import numpy as np

from segcore.coco.rle import positions_in_runs

#: Label of pixels that no instance covers.
BACKGROUND = 0
#: Label of pixels that count for nothing: unlabelled ground truth, batch padding.
IGNORE_INDEX = 255


def paint_instances(masks: np.ndarray, labels: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Paint instance masks into one semantic label map; where masks overlap, the one painted last wins.

    Args:
        masks: (N, H, W) bool or {0, 1} masks.
        labels: (N,) integer class labels, 1..K.
        order: (N,) indices giving the painting order, back to front. Default: as given.

    Returns:
        (H, W) int64 label map, ``BACKGROUND`` where no mask covers a pixel.
    """
    assert masks.ndim == 3 and labels.shape[0] == masks.shape[0], (masks.shape, labels.shape)
    label_map = np.full(masks.shape[-2:], BACKGROUND, dtype=np.int64)
    for i in (range(len(masks)) if order is None else order.tolist()):
        label_map[masks[i].astype(bool)] = labels[i]
    return label_map


def painting_order_by_area(masks: np.ndarray) -> np.ndarray:
    """:func:`painting_order_from_areas` of (N, H, W) masks: (N,) int64 indices, largest area first."""
    areas = masks.reshape(len(masks), -1).sum(1) if len(masks) else np.zeros(0, dtype=np.int64)
    return painting_order_from_areas(areas)


def painting_order_from_areas(areas: np.ndarray, images: np.ndarray | None = None) -> np.ndarray:
    """Painting order, back to front, that puts smaller masks in front of larger ones.

    COCO does not record depth; the smaller of two overlapping objects is usually the one in front
    (a cup on a table), the usual convention when flattening instances into a label map.

    Args:
        areas: (N,) mask areas in pixels.
        images: (N,) image index of each mask, to order the masks of many images at once.

    Returns:
        (N,) int64 indices, largest area first (stable: equal areas keep their order); with ``images``,
        image by image in ascending index, each ordered so.
    """
    areas = np.asarray(areas)
    return np.lexsort((-areas,) if images is None else (-areas, np.asarray(images)))


def paint_segments(owner: np.ndarray, first: np.ndarray, stop: np.ndarray, labels: np.ndarray,
                   n_segments: int) -> np.ndarray:
    """:func:`paint_instances` in run-length form: the cost grows with the masks' runs, not with pixels.

    The pixel space (images laid end to end, each flattened column-major as in COCO's RLE) is cut into
    segments that no mask boundary crosses, and each mask is a set of spans of segments.

    Args:
        owner: (F,) the mask of each span, 0..N-1; masks are painted in index order, so where masks
            overlap the highest index wins.
        first, stop: (F,) the span covers segments first..stop - 1.
        labels: (N,) integer class labels, 1..K.
        n_segments: S.

    Returns:
        (S,) int64 label of each segment, ``BACKGROUND`` where no mask covers it.
    """
    n = stop - first
    top = np.full(n_segments, -1, dtype=np.int64)
    np.maximum.at(top, np.repeat(first, n) + positions_in_runs(n), np.repeat(owner, n))
    # index -1 (no mask) picks the background appended after the labels
    return np.append(np.asarray(labels, dtype=np.int64), BACKGROUND)[top]


def connected_components(label_map: np.ndarray, probabilities: np.ndarray | None = None,
                         min_area: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a semantic label map into instances: one per connected region of one class.

    Args:
        label_map: (H, W) integer label map, ``BACKGROUND`` for background.
        probabilities: (C, H, W) class probabilities; each instance is scored by the mean probability of
            its class inside it. Without them every score is 1.
        min_area: regions of fewer pixels are dropped (speckle).

    Returns:
        masks (N, H, W) bool, labels (N,) int64, scores (N,) float32, as numpy arrays; N may be 0.
    """
    from scipy import ndimage  # here, not at the top: importing it costs more than scoring a results file

    height, width = label_map.shape
    masks, labels, scores = [np.zeros((0, height, width), dtype=bool)], [], []
    # 8-connectivity, as a person would count a diagonal touch as one object
    structure = np.ones((3, 3), dtype=bool)
    for label in np.unique(label_map):
        if label == BACKGROUND:
            continue
        regions, count = ndimage.label(label_map == label, structure=structure)
        index = np.arange(1, count + 1)
        keep = index[np.bincount(regions.ravel(), minlength=count + 1)[1:] >= min_area]
        if not len(keep):
            continue
        masks.append(regions[None] == keep[:, None, None])
        labels += [int(label)] * len(keep)
        scores += (ndimage.mean(probabilities[label], regions, keep).tolist() if probabilities is not None
                   else [1.0] * len(keep))
    return np.concatenate(masks), np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float32)
