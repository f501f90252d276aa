"""Attention focus: does a mask branch's spatial attention look at the object it segments?

For one detection matched to a ground truth, the focus is the share of the attention map's mass that falls
inside the ground-truth mask (both in the detection's RoI, at the attention map's resolution), divided by
the share of the RoI that the mask covers. 1.0 is attention spread evenly (no focus); above 1.0 the
attention is drawn to the object, below 1.0 away from it. The ratio is the attention's lift over chance.
"""

from __future__ import annotations

import numpy as np


def attention_focus(attention: np.ndarray, mask_in_roi: np.ndarray) -> float | None:
    """``(h, w)`` attention map >= 0, ``(h, w)`` ground-truth mask in the same RoI (its fraction of each
    cell, in [0, 1]) -> the focus; None where it is undefined (an attention without mass, or a mask that
    does not reach into the RoI)."""
    attention = np.asarray(attention, dtype=np.float64)
    mask_in_roi = np.asarray(mask_in_roi, dtype=np.float64)
    assert attention.shape == mask_in_roi.shape, (attention.shape, mask_in_roi.shape)
    mass, coverage = attention.sum(), mask_in_roi.mean()
    if mass <= 0 or coverage <= 0 or not np.isfinite(mass):
        return None
    return float((attention * mask_in_roi).sum() / mass / coverage)


def mask_in_roi(mask: np.ndarray, box: list[float] | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` binary mask, box ``[x1, y1, x2, y2]`` in pixels -> ``size`` fraction of each RoI cell the
    mask covers, sampled as the mask branch samples its RoI features (RoIAlign, 2×2 points a cell)."""
    # imported here: scoring a results file (no attention maps in it) starts without torch
    import torch
    from torchvision.ops import roi_align

    masks = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    boxes = torch.tensor([[0.0, *[float(v) for v in box]]], dtype=torch.float32)
    return roi_align(masks, boxes, output_size=size, spatial_scale=1.0, sampling_ratio=2)[0, 0].numpy()


def focus_of_matches(rows: list[dict], results, coco_gt, maps) -> dict[str, float | int | None]:
    """Set ``attention_focus`` on each matched row (``error_type`` true_positive) whose prediction has an
    attention map, None on the others; and summarise.

    Args:
        rows: :func:`segcore.metrics.matching.match_instances` rows (pred_id indexes ``results``).
        results: COCO results entries, each with a "bbox" [x, y, w, h] (the RoI the attention was computed in).
        coco_gt: pycocotools ``COCO`` of the ground truth.
        maps: ``maps[pred_id]`` the prediction's ``(h, w)`` attention map in its RoI, or None.

    Returns:
        {"focus_mean", "focus_median": over the matched detections; "instances": how many;
        "focus_iou_spearman": Spearman's rank correlation of focus with mask IoU (does a focused
        attention go with a better mask?)}, None where undefined; and their 95% intervals over images
        (:func:`image_bootstrap`).
    """
    from scipy.stats import spearmanr

    focus, ious, images = [], [], []
    for row in rows:
        row["attention_focus"] = None
        if row["error_type"] != "true_positive" or maps[row["pred_id"]] is None:
            continue
        attention = np.asarray(maps[row["pred_id"]], dtype=np.float32)
        x, y, w, h = results[row["pred_id"]]["bbox"]
        truth = coco_gt.annToMask(coco_gt.anns[row["gt_id"]])
        value = attention_focus(attention, mask_in_roi(truth, [x, y, x + w, y + h], attention.shape))
        row["attention_focus"] = value
        if value is not None:
            focus.append(value)
            ious.append(row["iou"])
            images.append(row["image_id"])
    spread = len(focus) >= 3 and np.ptp(focus) > 0 and np.ptp(ious) > 0
    intervals = image_bootstrap(np.array(focus), np.array(ious, dtype=np.float64), np.array(images)) if focus else {}
    return {"focus_mean": float(np.mean(focus)) if focus else None,
            "focus_median": float(np.median(focus)) if focus else None, "instances": len(focus),
            "focus_iou_spearman": float(spearmanr(focus, ious).statistic) if spread else None, **intervals}


def image_bootstrap(focus: np.ndarray, ious: np.ndarray, images: np.ndarray, *, resamples: int = 1000,
                    seed: int = 0, confidence: float = 0.95) -> dict[str, list[float] | None]:
    """95% percentile intervals of the mean focus and of Spearman's ρ of focus with IoU, resampling whole
    images (a detection's neighbours in its image are not independent of it).

    Args:
        focus, ious, images: (N,) each matched detection's focus, mask IoU and image id.

    Returns:
        {"focus_interval": [low, high], "focus_iou_spearman_interval": [low, high] or None where ρ is
        undefined in too many resamples, "interval_images": the number of images resampled}.
    """
    from scipy.stats import rankdata

    ids, position = np.unique(images, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(resamples, len(ids)))
    means, rhos = np.empty(resamples), []
    for r, drawn in enumerate(draws):
        weight = np.bincount(drawn, minlength=len(ids))[position]  # how often each detection's image was drawn
        means[r] = (weight * focus).sum() / weight.sum() if weight.sum() else np.nan
        chosen = np.repeat(np.arange(len(focus)), weight)
        a, b = focus[chosen], ious[chosen]
        if len(chosen) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
            rhos.append(np.corrcoef(rankdata(a), rankdata(b))[0, 1])
    tail = (1 - confidence) / 2
    means = means[~np.isnan(means)]
    return {"focus_interval": [float(q) for q in np.quantile(means, [tail, 1 - tail])] if len(means) else None,
            "focus_iou_spearman_interval": [float(q) for q in np.quantile(rhos, [tail, 1 - tail])]
            if len(rhos) >= resamples // 2 else None,
            "interval_images": int(len(ids))}
