"""Paired comparison of two models on the same images: bootstrap confidence intervals over images.

Both models are resampled with the same image indices (a paired bootstrap), so the interval reflects how
much the difference between them depends on which images happened to be in the split, not the spread
of either model alone. Differences are always model B minus model A: positive means B is better on a
higher-is-better metric.

Mask AP is not a mean of per-image values, so :func:`bootstrap_ap` (two models) and :func:`ap_interval`
(one) re-accumulate AP for each resample from the per-image matches of segcore's own
:class:`segcore.metrics.coco.CocoEvaluation`, vectorised over resamples; with every image drawn once it is
COCOeval's ``stats[0]``, bit for bit (tests/metrics/test_stats.py checks both against pycocotools).
"""

from __future__ import annotations

import math

import numpy as np


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) image indices drawn with replacement; the one source of samples for every metric."""
    if n < 1:
        raise ValueError("A bootstrap needs at least one image.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}.")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) how many times each image is drawn in each resample (the draws of :func:`_indices`)."""
    indices = _indices(n, resamples, seed)
    rows = np.repeat(np.arange(resamples), n)
    return np.bincount(rows * n + indices.ravel(), minlength=resamples * n).reshape(resamples, n)


def _interval(observed: float, differences: np.ndarray, confidence: float) -> dict:
    """Percentile interval and a two-sided bootstrap p-value for "no difference"."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}.")
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    # Counting the observed sample among the resamples keeps p above 0 at any finite number of resamples.
    below = np.count_nonzero(differences <= 0)
    above = np.count_nonzero(differences >= 0)
    p_value = min(1.0, 2 * (1 + min(below, above)) / (1 + len(differences)))
    return {"difference": float(observed), "low": float(low), "high": float(high),
            "resamples": len(differences), "confidence": confidence, "p_value": float(p_value)}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, statistic=np.mean) -> dict:
    """Bootstrap interval of statistic(b) - statistic(a) over paired per-image values.

    Args:
        a, b: (N,) per-image values of models A and B on the same N images, in the same order (mIoU,
            F1, pixel accuracy, ...). Images where either value is NaN are left out.
        resamples: bootstrap resamples.
        seed: seeds the resampling; equal seeds give equal answers.
        confidence: coverage of the percentile interval.
        statistic: reduces values along ``axis=-1`` (numpy reductions do); other callables are applied
            row by row.

    Returns:
        {"difference", "low", "high", "resamples", "confidence", "p_value", "n_images", "a", "b"}, with
        ``a`` and ``b`` the statistic of each model over all images.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Paired values need two 1-D arrays of equal length, not shapes {a.shape} and {b.shape}.")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    indices = _indices(len(a), resamples, seed)

    def reduce(values: np.ndarray) -> np.ndarray:  # (R, N) -> (R,)
        try:
            return np.asarray(statistic(values, axis=-1), dtype=np.float64)
        except TypeError:
            return np.array([statistic(row) for row in values], dtype=np.float64)

    # The observed value goes through the same reduction as the resamples, so identical inputs give
    # bit-identical statistics.
    stat_a, stat_b = reduce(a[None])[0], reduce(b[None])[0]
    differences = reduce(b[indices]) - reduce(a[indices])
    return {**_interval(stat_b - stat_a, differences, confidence), "n_images": len(a),
            "a": float(stat_a), "b": float(stat_b)}


def bootstrap_mean(values: np.ndarray, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile bootstrap interval of one model's mean over images (NaN values left out).

    Returns:
        {"mean", "low", "high", "n_images"}; all None when no value is left.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {"mean": None, "low": None, "high": None, "n_images": 0}
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}.")
    means = values[_indices(values.size, resamples, seed)].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "n_images": int(values.size)}


class _CategoryMatches:
    """One category's detections over all images, in COCO's accumulate order.

    Attributes:
        image: (D,) image position of each detection, detections sorted by descending score (stable).
        tps, fps: (T, D) float 0/1 true and false positives per IoU threshold (ignored ones are neither).
        positives: (I,) non-ignored GT count of each image.
    """

    def __init__(self, image: np.ndarray, tps: np.ndarray, fps: np.ndarray, positives: np.ndarray):
        self.image, self.tps, self.fps, self.positives = image, tps, fps, positives

    @classmethod
    def from_detections(cls, scores: np.ndarray, image: np.ndarray, matched: np.ndarray, ignored: np.ndarray,
                        positives: np.ndarray) -> _CategoryMatches:
        """From one category's detections in COCOeval's per-image order (images in order, each image's
        detections by descending score): scores (D,), image (D,), matched and ignored (T, D) bool."""
        order = np.argsort(-scores, kind="mergesort")  # accumulate's stable sort over all images
        matched, ignored = matched[:, order], ignored[:, order]
        return cls(image[order], (matched & ~ignored).astype(np.float64), (~matched & ~ignored).astype(np.float64),
                   positives)


def _precision(category: _CategoryMatches, counts: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """COCO's interpolated precision of one category under image multiplicities ``counts``.

    Args:
        counts: (B, I) how many times each image is in each resample.
        rec_thrs: (R,) recall thresholds.

    Returns:
        (B, T, R) precision; meaningless where the resample holds no GT of the category.

    An image drawn c times contributes each detection c times in a row. Those copies need not be
    expanded: within a run of true positives precision rises, so the envelope and the first point past
    each recall threshold both land on the run's last copy; a run of false positives leaves recall
    unchanged and its points are dominated by the point before it. Weighted cumulative sums over the
    distinct detections therefore give COCO's numbers for the expanded list, bit for bit for counts of 1.
    """
    n_resamples = counts.shape[0]
    n_thresholds, n_dets = category.tps.shape
    n_recall = len(rec_thrs)
    if not n_dets:
        return np.zeros((n_resamples, n_thresholds, n_recall))
    positives = (counts @ category.positives).astype(np.float64)[:, None, None]  # (B, 1, 1)
    weights = counts[:, None, category.image].astype(np.float64)  # (B, 1, D)
    tp = np.cumsum(weights * category.tps, axis=2)  # (B, T, D)
    fp = np.cumsum(weights * category.fps, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(positives > 0, tp / positives, 0.0)
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1].reshape(-1, n_dets)
    # COCO takes, per recall threshold r, the first detection whose recall reaches it. Ranking each recall
    # among the thresholds (exact float comparisons) gives a non-decreasing count per row; detection d is
    # then the answer for rank[d] - rank[d-1] consecutive thresholds, and a zero sentinel for the
    # thresholds no detection reaches. One np.repeat lays out every row's R values in order.
    rank = np.searchsorted(rec_thrs, recall, side="right").reshape(-1, n_dets)  # (B*T, D) in [1, R]
    repeats = np.diff(rank, axis=1, prepend=0, append=n_recall)  # (B*T, D + 1), each row sums to R
    values = np.concatenate([envelope, np.zeros((len(envelope), 1))], axis=1)
    return np.repeat(values.ravel(), repeats.ravel()).reshape(n_resamples, n_thresholds, n_recall)


def resampled_ap(evaluation, counts: np.ndarray) -> np.ndarray:
    """COCO AP (``stats[0]``: IoU 0.5:0.95, area all, maxDets 100) of each image resample.

    Args:
        evaluation: a :class:`segcore.metrics.coco.CocoEvaluation`.
        counts: (B, I) multiplicity of each of ``evaluation.image_ids`` in each resample; a row of ones is
            the dataset itself and gives COCOeval's ``stats[0]`` exactly.

    Returns:
        (B,) AP per resample, -1 where no resample image has GT (COCO's value for "absent").
    """
    from segcore.metrics.coco import RECALL_THRESHOLDS

    return _resampled_ap(evaluation_categories(evaluation), counts, RECALL_THRESHOLDS)


def evaluation_categories(evaluation) -> list[_CategoryMatches]:
    """The per-category matches (area all, 100 detections) of a :class:`segcore.metrics.coco.CocoEvaluation`,
    the same as ``COCOeval.evalImgs`` would give for it."""
    from segcore.metrics.coco import ALL_AREAS, IOU_THRESHOLDS

    matches = evaluation.match([ALL_AREAS])
    matched, ignored = matches.dt_matches[0] != 0, matches.dt_ignore[0]  # (T, N)
    n_images = len(evaluation.image_ids)
    categories = []
    for k in range(len(evaluation.category_ids)):
        positives = np.zeros(n_images, dtype=np.int64)
        pairs = evaluation.pair_category == k
        positives[evaluation.pair_image[pairs]] = matches.n_gt[0, pairs]
        # detections are held by category, then image, then descending score: COCOeval's concatenation
        inside = np.flatnonzero(evaluation.dt_category == k)
        if not inside.size:
            empty = np.zeros((len(IOU_THRESHOLDS), 0))
            categories.append(_CategoryMatches(np.zeros(0, np.int64), empty, empty, positives))
            continue
        categories.append(_CategoryMatches.from_detections(evaluation.dt_scores[inside], evaluation.dt_image[inside],
                                                           matched[:, inside], ignored[:, inside], positives))
    return categories


def ap_interval(evaluation, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """One model's COCO AP with a percentile bootstrap interval over images.

    Args:
        evaluation: a :class:`segcore.metrics.coco.CocoEvaluation`.

    Returns:
        {"mean": AP (COCOeval's stats[0]), "low", "high", "n_images"}; all None without ground truth.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}.")
    n_images = len(evaluation.image_ids)
    if n_images == 0:
        return {"mean": None, "low": None, "high": None, "n_images": 0}
    counts = _counts(n_images, resamples, seed)
    ap = resampled_ap(evaluation, np.concatenate([np.ones((1, n_images), np.int64), counts]))
    resampled = ap[1:][ap[1:] >= 0]  # a resample with no ground truth has no AP
    if ap[0] < 0 or resampled.size == 0:
        return {"mean": None if ap[0] < 0 else float(ap[0]), "low": None, "high": None, "n_images": n_images}
    tail = (1 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    return {"mean": float(ap[0]), "low": float(low), "high": float(high), "n_images": n_images}


def _resampled_ap(categories: list[_CategoryMatches], counts: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """(B,) AP of each resample (``counts`` (B, I)) over ``categories``; -1 where none has GT."""
    counts = np.asarray(counts, dtype=np.int64)
    assert counts.ndim == 2 and all(counts.shape[1] == c.positives.size for c in categories), counts.shape
    if not categories:
        return np.full(len(counts), -1.0)
    n_thresholds, n_recall = categories[0].tps.shape[0], len(rec_thrs)
    # COCOeval marks a category without GT "absent" (-1) and leaves it out of the mean.
    present = counts @ np.stack([c.positives for c in categories], axis=1) > 0  # (B, K)
    used = np.flatnonzero(present.any(axis=0))

    largest = max([len(categories[k].image) for k in used] + [1])
    # Resamples go in chunks small enough for the (B, T, D) sums and the (K, B, T, R) precision table.
    table_size = n_thresholds * n_recall * max(len(used), 1)
    chunk = max(1, min(4_000_000 // (n_thresholds * largest), 8_000_000 // table_size))
    ap = np.full(len(counts), -1.0)
    for start in range(0, len(counts), chunk):
        block = counts[start:start + chunk]
        table = np.empty((len(used), len(block), n_thresholds, n_recall))
        for j, k in enumerate(used):
            table[j] = _precision(categories[k], block, rec_thrs)
        for b in range(len(block)):
            valid = present[start + b, used]
            if valid.any():
                # COCOeval.summarize's np.mean over (t, r, k) order, so that the sums run in the same order.
                ap[start + b] = np.mean(table[valid, b].transpose(1, 2, 0).ravel())
    return ap


def bootstrap_ap(eval_a, eval_b, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Paired bootstrap interval of AP(B) - AP(A), resampling images.

    Args:
        eval_a, eval_b: :class:`segcore.metrics.coco.CocoEvaluation` of models A and B over the same ground
            truth and IoU type.
        resamples, seed, confidence: as in :func:`paired_bootstrap`; the same seed draws the same images.

    Returns:
        {"difference", "low", "high", "resamples", "confidence", "p_value", "n_images", "a", "b"}, ``a``
        and ``b`` being each model's AP, equal to COCOeval's ``stats[0]``. A resample without GT of any
        category has no AP and is left out of the interval.
    """
    if list(eval_a.image_ids) != list(eval_b.image_ids):
        raise ValueError("The two evaluations cover different images; evaluate both models on the same split.")
    if eval_a.iou_type != eval_b.iou_type:
        raise ValueError(f"Cannot compare {eval_a.iou_type} AP with {eval_b.iou_type} AP.")
    n_images = len(eval_a.image_ids)
    counts = _counts(n_images, resamples, seed)
    identity = np.ones((1, n_images), dtype=np.int64)
    ap_a = resampled_ap(eval_a, np.concatenate([identity, counts]))
    ap_b = resampled_ap(eval_b, np.concatenate([identity, counts]))
    if ap_a[0] < 0:
        raise ValueError("The ground truth has no objects, so AP is undefined.")
    valid = (ap_a[1:] >= 0) & (ap_b[1:] >= 0)
    differences = ap_b[1:][valid] - ap_a[1:][valid]
    return {**_interval(ap_b[0] - ap_a[0], differences, confidence), "n_images": n_images,
            "a": float(ap_a[0]), "b": float(ap_b[0])}


def most_different(a: dict[int, float], b: dict[int, float], k: int = 10) -> list[dict]:
    """The ``k`` images on which two models' per-image values differ most.

    Args:
        a, b: image_id -> value for models A and B; images missing from either, or None/NaN, are skipped.

    Returns:
        up to k rows {"image_id", "a", "b", "difference": b - a}, largest |difference| first, ties by
        image_id.
    """
    rows = []
    for image_id in sorted(set(a) & set(b)):
        va, vb = a[image_id], b[image_id]
        if va is None or vb is None or math.isnan(va) or math.isnan(vb):
            continue
        rows.append({"image_id": image_id, "a": float(va), "b": float(vb), "difference": float(vb) - float(va)})
    rows.sort(key=lambda row: -abs(row["difference"]))
    return rows[:k]
