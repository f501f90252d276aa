"""COCO instance metrics for masks and boxes, number for number equal to pycocotools' COCOeval.

Why not call COCOeval: it spends most of its time in Python loops (one ``evaluateImg`` call per image,
category and area range, empty or not, and a per-detection loop in ``accumulate``), and it cannot score an
empty results list (``loadRes([])`` fails). faster-coco-eval is fast but its ``stats`` differ from
pycocotools' in the last bit (checked on the COCO fixture: AP50 off by 1.1e-16), and the numbers must be
identical. So this module re-implements COCOeval's three steps with numpy, keeping every floating-point
operation that produces a number in the same order as pycocotools:

- the IoUs come from ``pycocotools.mask.iou`` on the same inputs (detections sorted by score with a
  stable sort, the top 100 per image and category);
- matching (greedy by score, per IoU threshold and area range, crowd and out-of-range ground truths
  ignored) only produces ids and flags, so any faithful implementation gives the same result; here it
  is vectorized over thresholds and area ranges;
- precision and recall use the same divisions, the same stable sort of scores and the same recall
  sampling (``searchsorted`` found without a per-row loop); the summary means index the precision array
  exactly as ``COCOeval.summarize`` does.

Tests compare every stat with ``==`` against pycocotools on the COCO fixture and on random scenes.

Conventions that differ from calling pycocotools by hand, on purpose:

- A number COCOeval reports as -1 (nothing to score: no ground truth in that area range, say) is None.
- An empty results list scores like a COCOeval with no detections: 0 wherever there is ground truth.
- For masks, a detection's area (for the small/medium/large ranges) is its mask area, even when the
  entry also carries a box; ``COCO.loadRes`` would use the box area for such entries, which is why
  Detectron2 drops boxes before a segm evaluation. For boxes it is the box area, as in ``loadRes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# pycocotools.cocoeval.Params.setDetParams, the same expressions so the floats are the same.
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
ALL_AREAS = (0 ** 2, 1e5 ** 2)
COCO_AREA_RANGES = {"all": ALL_AREAS, "small": (0 ** 2, 32 ** 2), "medium": (32 ** 2, 96 ** 2),
                    "large": (96 ** 2, 1e5 ** 2)}


@dataclass
class ImagePair:
    """The ground truths and detections of one (image, category), as COCOeval groups them."""

    image_id: int
    category_index: int   # index into the sorted category ids
    gt_ids: np.ndarray    # (G,) int64 annotation ids, in the ground truth file's order
    gt_area: np.ndarray   # (G,) float64, the annotations' "area" field
    gt_crowd: np.ndarray  # (G,) bool
    gt_rles: list         # G compressed RLE (segm) or [] (bbox)
    dt_index: np.ndarray  # (D,) int64 index into the results list, by descending score (stable), D <= 100
    dt_scores: np.ndarray  # (D,) float64
    dt_area: np.ndarray   # (D,) float64
    dt_rles: list         # D compressed RLE (segm) or [] (bbox)
    ious: np.ndarray      # (D, G) float64, pycocotools.mask.iou(dt, gt, iscrowd); may be replaced


@dataclass
class PairMatch:
    """COCO's matching of one ImagePair, for A area ranges and T IoU thresholds."""

    dt_matches: np.ndarray  # (A, T, D) int64 id of the matched ground truth, 0 if unmatched
    dt_ignore: np.ndarray   # (A, T, D) bool
    n_gt: np.ndarray        # (A,) int64 ground truths that count (not crowd, in range, not excluded)


def _greedy_match(ious: np.ndarray, gt_ids: np.ndarray, gt_crowd: np.ndarray,
                  gt_ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.evaluateImg's matching, for all area ranges and thresholds at once.

    Each detection, best score first, takes the not-yet-matched ground truth with the highest IoU at or
    above the threshold (the last such one on ties, as pycocotools' loop does), preferring regular ground
    truths to ignored ones; crowd regions can be matched any number of times.

    Args:
        ious: (D, G); gt_ids, gt_crowd: (G,); gt_ignore: (A, G).
    Returns:
        dt_matches (A, T, D) int64 ground truth ids (0: unmatched), dt_ignore (A, T, D) bool.
    """
    n_areas, n_gt = gt_ignore.shape
    n_dt = ious.shape[0]
    dt_matches = np.zeros((n_areas, len(IOU_THRESHOLDS), n_dt), dtype=np.int64)
    dt_ignore = np.zeros(dt_matches.shape, dtype=bool)
    if n_dt == 0 or n_gt == 0:
        return dt_matches, dt_ignore
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None]
    candidate = ious >= thresholds.min()
    if candidate.sum(0).max() <= 1 and candidate.sum(1).max() <= 1:
        # No detection competes for a ground truth and none has a choice: each candidate pair matches
        # exactly at the thresholds its IoU reaches, whatever the order.
        d, g = np.nonzero(candidate)
        reached = ious[d, g][None, :] >= thresholds[0]  # (T, pairs)
        dt_matches[:, :, d] = np.where(reached, gt_ids[g], 0)[None]
        dt_ignore[:, :, d] = reached[None] & gt_ignore[:, None, g]
        return dt_matches, dt_ignore
    taken = np.zeros((n_areas, len(IOU_THRESHOLDS), n_gt), dtype=bool)
    regular = ~gt_ignore[:, None, :]
    for d in np.flatnonzero(ious.max(1) >= thresholds.min()):  # the others match nothing
        row = ious[d]
        candidates = (row >= thresholds) & ~taken
        preferred = candidates & regular
        pool = np.where(preferred.any(2, keepdims=True), preferred, candidates)
        values = np.where(pool, row, -1.0)
        best = pool & (values == values.max(2, keepdims=True))
        chosen = n_gt - 1 - np.argmax(best[:, :, ::-1], axis=2)
        area_index, threshold_index = np.nonzero(pool.any(2))
        g = chosen[area_index, threshold_index]
        dt_matches[area_index, threshold_index, d] = gt_ids[g]
        dt_ignore[area_index, threshold_index, d] = gt_ignore[area_index, g]
        single = ~gt_crowd[g]
        taken[area_index[single], threshold_index[single], g[single]] = True
    return dt_matches, dt_ignore


def _precision_recall(tps: np.ndarray, fps: np.ndarray, n_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.accumulate's interpolated precision at the 101 recall points, for B curves at once.

    Args:
        tps, fps: (B, N) bool, detections sorted by descending score; n_gt: (B,) int64 > 0.
    Returns:
        precision (B, 101) float64, recall (B,) float64.
    """
    n_rows, n_dt = tps.shape
    if n_dt == 0:
        return np.zeros((n_rows, len(RECALL_THRESHOLDS))), np.zeros(n_rows)
    tp = np.cumsum(tps, axis=1).astype(dtype=float)
    fp = np.cumsum(fps, axis=1).astype(dtype=float)
    rc = tp / n_gt[:, None]
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    # searchsorted(rc, recall threshold): rc = tp / n_gt is monotone in tp, so the first index with
    # rc >= r is where the cumulative TP count first reaches `needed`, the fewest TPs whose recall >= r.
    distinct, which = np.unique(n_gt, return_inverse=True)
    needed = np.stack([np.searchsorted(np.arange(n + 1) / n, RECALL_THRESHOLDS, side="left") for n in distinct])[which]
    _, tp_columns = np.nonzero(tps)
    tp_count = tps.sum(1)
    flat = np.clip((np.cumsum(tp_count) - tp_count)[:, None] + needed - 1, 0, tp_columns.size)
    position = np.append(tp_columns, 0)[flat]
    position = np.where(needed == 0, 0, np.where(needed <= tp_count[:, None], position, n_dt))
    precision = np.where(position < n_dt, np.take_along_axis(pr, np.minimum(position, n_dt - 1), 1), 0.0)
    return precision, rc[:, -1]


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean of the entries > -1, as COCOeval.summarize takes it; None where it would report -1."""
    valid = values[values > -1]
    return None if valid.size == 0 else float(np.mean(valid))


def _mean_curve(precision: np.ndarray) -> list[float | None]:
    """(..., R, K) precision -> R means over the entries > -1 (None where there are none), for plotting."""
    rows = np.moveaxis(precision, -2, 0).reshape(len(RECALL_THRESHOLDS), -1)
    valid = rows > -1
    count = valid.sum(1)
    means = np.where(valid, rows, 0.0).sum(1) / np.maximum(count, 1)
    return [float(m) if c else None for m, c in zip(means, count)]


class CocoEvaluation:
    """One set of results prepared for COCO evaluation: grouped, sorted, areas and IoUs computed once.

    ``match`` and ``accumulate`` can then run several times (other area ranges, ground-truth subsets,
    image subsets) without recomputing IoUs; boundary AP replaces ``pair.ious`` before matching.

    Args:
        coco_gt: a pycocotools ``COCO``; every image and category in it is evaluated.
        results: COCO results entries (image_id, category_id, score, and "segmentation" as compressed RLE
            for iou_type "segm" or "bbox" [x, y, w, h] for "bbox"); entries on images or categories that
            ``coco_gt`` lacks are left out, as COCOeval does.
        iou_type: "segm" or "bbox".
    """

    def __init__(self, coco_gt, results: list[dict], iou_type: str):
        assert iou_type in ("segm", "bbox"), iou_type
        self.coco_gt, self.iou_type = coco_gt, iou_type
        self.image_ids = sorted(int(i) for i in coco_gt.getImgIds())
        self.category_ids = sorted(int(c) for c in coco_gt.getCatIds())
        category_index = {c: k for k, c in enumerate(self.category_ids)}
        images = set(self.image_ids)

        gt_by_pair: dict[tuple[int, int], list[dict]] = {}
        for image_id in self.image_ids:
            for ann in coco_gt.imgToAnns.get(image_id, []):
                if ann["category_id"] in category_index:
                    gt_by_pair.setdefault((image_id, ann["category_id"]), []).append(ann)
        dt_by_pair: dict[tuple[int, int], list[int]] = {}
        for i, entry in enumerate(results):
            if entry["image_id"] in images and entry["category_id"] in category_index:
                dt_by_pair.setdefault((entry["image_id"], entry["category_id"]), []).append(i)

        scores = np.array([float(entry["score"]) for entry in results], dtype=np.float64)
        if iou_type == "segm":
            assert all("segmentation" in entry for entry in results), "segm needs a mask in every entry"
            # one call per mask, as COCO.loadRes does (area() of a list overflows under numpy 2)
            dt_area = np.array([mask_utils.area(entry["segmentation"]) for entry in results], dtype=np.float64)
        else:
            assert all("bbox" in entry for entry in results), "bbox needs a box in every entry"
            dt_area = np.array([float(e["bbox"][2]) * float(e["bbox"][3]) for e in results], dtype=np.float64)

        self.pairs: list[ImagePair] = []
        image_order = {image_id: n for n, image_id in enumerate(self.image_ids)}
        keys = sorted(gt_by_pair.keys() | dt_by_pair.keys(),
                      key=lambda key: (category_index[key[1]], image_order[key[0]]))
        for image_id, category_id in keys:
            anns = gt_by_pair.get((image_id, category_id), [])
            found = np.array(dt_by_pair.get((image_id, category_id), []), dtype=np.int64)
            dt_index = found[np.argsort(-scores[found], kind="mergesort")][:MAX_DETS[-1]]
            crowd = np.array([bool(ann.get("iscrowd", 0)) for ann in anns], dtype=bool)
            if iou_type == "segm":
                gt_objects = [coco_gt.annToRLE(ann) for ann in anns]
                dt_objects = [results[i]["segmentation"] for i in dt_index]
            else:
                gt_objects = [ann["bbox"] for ann in anns]
                dt_objects = [results[i]["bbox"] for i in dt_index]
            ious = np.zeros((len(dt_index), len(anns)))
            if len(dt_index) and len(anns):
                ious = np.asarray(mask_utils.iou(dt_objects, gt_objects, [int(c) for c in crowd]), dtype=np.float64)
            segm = iou_type == "segm"
            self.pairs.append(ImagePair(
                image_id=image_id, category_index=category_index[category_id],
                gt_ids=np.array([ann["id"] for ann in anns], dtype=np.int64),
                gt_area=np.array([ann["area"] for ann in anns], dtype=np.float64), gt_crowd=crowd,
                gt_rles=gt_objects if segm else [], dt_index=dt_index, dt_scores=scores[dt_index],
                dt_area=dt_area[dt_index], dt_rles=dt_objects if segm else [], ious=ious))

    def match(self, area_ranges: Sequence[tuple[float, float]] = tuple(COCO_AREA_RANGES.values()),
              excluded_gt_ids: set[int] | None = None) -> list[PairMatch]:
        """COCO's matching of every pair, for each area range (bounds inclusive, as COCOeval).

        ``excluded_gt_ids`` scores a subset of the ground truth: the excluded annotations are ignored
        like crowd regions (not missed when unmatched; a detection matched to one is neither a true nor
        a false positive), and so is an unmatched detection whose best-overlapping non-crowd ground
        truth of its class is excluded, the way COCO ignores unmatched detections outside an area range.
        An unmatched detection that overlaps no ground truth of its class is a false positive in every
        subset.
        """
        ranges = np.asarray(area_ranges, dtype=np.float64).reshape(-1, 2)
        low, high = ranges[:, :1], ranges[:, 1:]
        matches = []
        for pair in self.pairs:
            gt_ignore = pair.gt_crowd[None, :] | (pair.gt_area < low) | (pair.gt_area > high)
            dt_outside = (pair.dt_area < low) | (pair.dt_area > high)
            if excluded_gt_ids is not None and pair.gt_ids.size:
                excluded = np.array([int(g) in excluded_gt_ids for g in pair.gt_ids], dtype=bool)
                gt_ignore = gt_ignore | excluded
                if pair.ious.size:
                    overlap = np.where(pair.gt_crowd, 0.0, pair.ious)
                    best = np.argmax(overlap, axis=1)
                    dt_outside = dt_outside | ((overlap.max(1) > 0) & excluded[best])
            dt_matches, dt_ignore = _greedy_match(pair.ious, pair.gt_ids, pair.gt_crowd, gt_ignore)
            dt_ignore |= (dt_matches == 0) & dt_outside[:, None, :]
            matches.append(PairMatch(dt_matches, dt_ignore, (~gt_ignore).sum(1)))
        return matches

    def accumulate(self, matches: list[PairMatch], image_ids: set[int] | None = None, *,
                   n_areas: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval.accumulate: precision (T, R, K, A, M) and recall (T, K, A, M), -1 where no ground truth.

        T IoU thresholds, R = 101 recall points, K categories, A area ranges (``n_areas``, needed only
        when there are no pairs at all), M = 3 detection limits. ``image_ids`` restricts the evaluation to
        those images, as ``params.imgIds`` does.
        """
        n_areas = matches[0].n_gt.size if matches else (n_areas or 1)
        shape = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(self.category_ids), n_areas, len(MAX_DETS))
        precision, recall = -np.ones(shape), -np.ones(shape[:1] + shape[2:])
        by_category: list[list[tuple[ImagePair, PairMatch]]] = [[] for _ in self.category_ids]
        for pair, match in zip(self.pairs, matches):  # pairs come sorted by category, then image
            if image_ids is None or pair.image_id in image_ids:
                by_category[pair.category_index].append((pair, match))
        for k, entries in enumerate(by_category):
            if not entries:
                continue
            n_gt = np.sum([match.n_gt for _, match in entries], axis=0)
            areas = np.flatnonzero(n_gt > 0)
            if areas.size == 0:
                continue
            scores = np.concatenate([pair.dt_scores for pair, _ in entries])
            order = np.argsort(-scores, kind="mergesort")
            rank = np.concatenate([np.arange(pair.dt_scores.size) for pair, _ in entries])[order]
            matched = np.concatenate([match.dt_matches[areas] for _, match in entries], axis=2)[:, :, order] != 0
            counted = ~np.concatenate([match.dt_ignore[areas] for _, match in entries], axis=2)[:, :, order]
            # A detection beyond the limit stays in place as a neither-TP-nor-FP entry: it repeats the
            # previous cumulative counts, which leaves the sampled precision and the recall unchanged
            # (pycocotools keeps its ignored detections in place the same way), so one sort serves all limits.
            within = rank[None, None, None, :] < np.array(MAX_DETS)[:, None, None, None]  # (M, 1, 1, N)
            rows = (len(MAX_DETS) * areas.size * len(IOU_THRESHOLDS), order.size)
            curve, final_recall = _precision_recall((within & matched & counted).reshape(rows),
                                                    (within & ~matched & counted).reshape(rows),
                                                    np.tile(np.repeat(n_gt[areas], len(IOU_THRESHOLDS)), len(MAX_DETS)))
            curve = curve.reshape(len(MAX_DETS), areas.size, len(IOU_THRESHOLDS), -1)
            precision[:, :, k, areas, :] = curve.transpose(2, 3, 1, 0)
            recall[:, k, areas, :] = final_recall.reshape(len(MAX_DETS), areas.size, -1).transpose(2, 1, 0)
        return precision, recall

    def summary(self, *, class_names: list[str] | None = None,
                area_ranges: dict[str, tuple[float, float]] | None = None, curves: bool = True) -> dict:
        """Match, accumulate and summarize with COCO's area ranges plus ``area_ranges``; see coco_metrics."""
        ranges = list(COCO_AREA_RANGES.values()) + list((area_ranges or {}).values())
        precision, recall = self.accumulate(self.match(ranges), n_areas=len(ranges))
        metrics: dict = dict(zip(STAT_NAMES, _coco_stats(precision, recall)))
        names = self.class_names(class_names)
        metrics["per_class"] = {name: _mean_valid(precision[:, :, k, 0, -1]) for k, name in enumerate(names)}
        if area_ranges:
            metrics["area_ranges"] = {name: _mean_valid(precision[:, :, :, 4 + a, -1])
                                      for a, name in enumerate(area_ranges)}
        if curves:
            metrics["curves"] = {
                "recall": RECALL_THRESHOLDS.tolist(),
                "precision": _mean_curve(precision[:, :, :, 0, -1]),
                "precision50": _mean_curve(precision[0, :, :, 0, -1]),
                "precision75": _mean_curve(precision[5, :, :, 0, -1]),
                "per_class_precision": {name: (_mean_curve(precision[:, :, k:k + 1, 0, -1])
                                               if metrics["per_class"][name] is not None else None)
                                        for k, name in enumerate(names)},
            }
        return metrics

    def class_names(self, class_names: list[str] | None = None) -> list[str]:
        """Names of the categories in ascending id order: ``class_names`` if given, else the GT's names."""
        if class_names is None:
            return [str(self.coco_gt.cats[c].get("name", c)) for c in self.category_ids]
        assert len(class_names) == len(self.category_ids), (len(class_names), len(self.category_ids))
        return list(class_names)


def _coco_stats(precision: np.ndarray, recall: np.ndarray) -> list[float | None]:
    """COCOeval.summarize's 12 numbers (same indexing, same means), None for its -1."""
    def summarize(ap: bool, iou: float | None = None, area: int = 0, max_dets: int = 2) -> float | None:
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, [area], [max_dets]] if ap else s[:, :, [area], [max_dets]]
        return _mean_valid(s)
    return [summarize(True), summarize(True, .5), summarize(True, .75), summarize(True, area=1),
            summarize(True, area=2), summarize(True, area=3), summarize(False, max_dets=0),
            summarize(False, max_dets=1), summarize(False), summarize(False, area=1),
            summarize(False, area=2), summarize(False, area=3)]


def coco_metrics(coco_gt, results: list[dict], iou_type: str, *, class_names: list[str] | None = None,
                 area_ranges: dict[str, tuple[float, float]] | None = None) -> dict:
    """COCO's 12 summary numbers, per-class AP, optional extra area ranges and precision-recall curves.

    Args:
        coco_gt: a pycocotools ``COCO`` holding the ground truth (images, annotations, categories).
        results: COCO results entries, validated (see :func:`segcore.results.load_results`); may be empty.
        iou_type: "segm" (every entry needs a compressed RLE "segmentation") or "bbox".
        class_names: K names of the categories in ascending id order; default the names in ``coco_gt``.
        area_ranges: extra named area ranges in pixels, e.g. {"tiny": (0, 16 ** 2)}, bounds inclusive.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl": equal to
        ``COCOeval.stats`` in that order, None where COCOeval reports -1;
        "per_class": {name: AP over IoU .50:.95, all areas, 100 detections (Detectron2's per-class AP),
        None for a class without ground truth};
        "area_ranges": {name: AP} (only when ``area_ranges`` is given);
        "curves": {"recall": the 101 recall points, "precision" / "precision50" / "precision75": mean
        precision over classes at each recall point (IoU .50:.95 averaged, .50, .75), "per_class_precision":
        {name: 101 values at IoU .50:.95 averaged, or None}}}.
    """
    return CocoEvaluation(coco_gt, results, iou_type).summary(class_names=class_names, area_ranges=area_ranges)


OCCLUSION_BINS = {"0": (-np.inf, 0.0), "0-0.25": (0.0, 0.25), "0.25-0.5": (0.25, 0.5), ">0.5": (0.5, np.inf)}
OBJECTS_PER_IMAGE_BINS = {"1-3": (1, 3), "4-8": (4, 8), "9+": (9, None)}


def breakdowns(coco_gt, results: list[dict], iou_type: str, *, occlusion: dict[int, float],
               class_names: list[str] | None = None) -> dict:
    """AP (IoU .50:.95, all areas, 100 detections) by occlusion and by number of objects per image.

    By occlusion, bins (low, high] of each ground truth's value in ``occlusion`` (annotation id -> hidden
    fraction 0..1; bin "0" holds exactly 0): each bin is scored on all images, with the ground truths of
    other bins ignored (see :meth:`CocoEvaluation.match`: detections matched to them, or unmatched but
    overlapping one of them best, do not count; detections that overlap nothing count as false positives
    in every bin). A ground truth without an occlusion value belongs to no bin.

    By objects per image, images are binned by their number of non-crowd ground-truth instances and each
    bin is COCO evaluated on its images alone (``params.imgIds``); images without objects are in no bin.

    ``class_names`` is accepted so callers can pass coco_metrics' keywords; the bins average over classes.

    Returns:
        {"occlusion": {"0", "0-0.25", "0.25-0.5", ">0.5": AP or None}, "objects_per_image": {"1-3", "4-8",
        "9+": AP or None}}; None where a bin holds no ground truth.
    """
    evaluation = CocoEvaluation(coco_gt, results, iou_type)
    gt_ids = [int(g) for pair in evaluation.pairs for g, crowd in zip(pair.gt_ids, pair.gt_crowd) if not crowd]
    by_occlusion = {}
    for name, (low, high) in OCCLUSION_BINS.items():
        inside = {g for g in gt_ids if g in occlusion and low < float(occlusion[g]) <= high}
        precision, _ = evaluation.accumulate(evaluation.match([ALL_AREAS], set(gt_ids) - inside))
        by_occlusion[name] = _mean_valid(precision[:, :, :, 0, -1])

    objects: dict[int, int] = {}
    for pair in evaluation.pairs:
        objects[pair.image_id] = objects.get(pair.image_id, 0) + int((~pair.gt_crowd).sum())
    matches = evaluation.match([ALL_AREAS])
    by_objects = {}
    for name, (low, high) in OBJECTS_PER_IMAGE_BINS.items():
        images = {i for i, n in objects.items() if n >= low and (high is None or n <= high)}
        precision, _ = evaluation.accumulate(matches, images)
        by_objects[name] = _mean_valid(precision[:, :, :, 0, -1]) if images else None
    return {"occlusion": by_occlusion, "objects_per_image": by_objects}

