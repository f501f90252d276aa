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
  is vectorized over image-category pairs, thresholds and area ranges, with a per-pair loop only where
  detections compete for ground truths;
- precision and recall use the same divisions, the same stable sort of scores and the same recall
  sampling (``searchsorted`` found without a per-row loop), for all categories at once; the summary
  means index the precision array exactly as ``COCOeval.summarize`` does.

Tests compare every stat with ``==`` against pycocotools on the COCO fixture and on random scenes.

Conventions that differ from calling pycocotools by hand, on purpose:

- A number COCOeval reports as -1 (nothing to score: no ground truth in that area range, say) is None.
- An empty results list scores like a COCOeval with no detections: 0 wherever there is ground truth.
- For masks, a detection's area (for the small/medium/large ranges) is its mask area, even when the
  entry also carries a box; ``COCO.loadRes`` would use the box area for such entries, which is why
  Detectron2 drops boxes before a segm evaluation. For boxes it is the box area, as in ``loadRes``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from segcore.coco.rle import batches

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# pycocotools.cocoeval.Params.setDetParams, the same expressions so the floats are the same.
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
ALL_AREAS = (0 ** 2, 1e5 ** 2)
COCO_AREA_RANGES = {"all": ALL_AREAS, "small": (0 ** 2, 32 ** 2), "medium": (32 ** 2, 96 ** 2),
                    "large": (96 ** 2, 1e5 ** 2)}
# COCOeval.evaluateImg compares IoUs with min(t, 1 - 1e-10), so that an IoU of 1 passes every threshold.
_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
# Detections x rows whose cumulative counts ``accumulate`` computes at once: int64 temporaries of 4 MB.
ROW_BLOCK_ELEMENTS = 2 ** 19


@dataclass
class Matches:
    """COCO's matching of every detection of a :class:`CocoEvaluation`, for A rows and T IoU thresholds.

    A row is one way of scoring: an area range, possibly with ground truths excluded or restricted to
    some images.
    """

    dt_matches: np.ndarray  # (A, T, N) int64 id of the matched ground truth, 0 if unmatched
    dt_ignore: np.ndarray   # (A, T, N) bool
    n_gt: np.ndarray        # (A, P) int64 ground truths that count (not crowd, in range, not excluded), per pair

    def rows(self, index) -> Matches:
        """The rows ``index`` (a slice or a list of row numbers)."""
        index = index if isinstance(index, slice) else list(index)
        return Matches(self.dt_matches[index], self.dt_ignore[index], self.n_gt[index])


def _precision_recall(tps: np.ndarray, fps: np.ndarray, n_gt: np.ndarray,
                      category_start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """COCOeval.accumulate's interpolated precision at the 101 recall points, and the recall, of every
    row and category with ground truth.

    Args:
        tps, fps: (B, N) bool, detections sorted by category (category k in the columns
            ``category_start[k]:category_start[k + 1]``), then by descending score.
        n_gt: (B, K) int64 ground truths that count.
        category_start: (K + 1,) int64.
    Returns:
        rows (L,), categories (L,): the cells where n_gt > 0; precision (L, 101), recall (L,) float64.
    """
    rows, categories = np.nonzero(n_gt > 0)
    n, n_dt = n_gt[rows, categories], tps.shape[1]
    start, stop = category_start[:-1], category_start[1:]
    if n_dt == 0 or rows.size == 0:
        return rows, categories, np.zeros((rows.size, len(RECALL_THRESHOLDS))), np.zeros(rows.size)
    column_category = np.repeat(np.arange(start.size), stop - start)
    # Cumulative counts restart at each category: the running total minus the total before its columns.
    tp_total = np.concatenate([np.zeros((len(tps), 1), np.int64), np.cumsum(tps, axis=1)], axis=1)
    fp_total = np.concatenate([np.zeros((len(fps), 1), np.int64), np.cumsum(fps, axis=1)], axis=1)
    tp = (tp_total[:, 1:] - tp_total[:, start][:, column_category]).astype(dtype=float)
    fp = (fp_total[:, 1:] - fp_total[:, start][:, column_category]).astype(dtype=float)
    pr = tp / (fp + tp + np.spacing(1))
    for low, high in zip(start.tolist(), stop.tolist()):
        pr[:, low:high] = np.maximum.accumulate(pr[:, low:high][:, ::-1], axis=1)[:, ::-1]
    tp_count = tp_total[:, stop] - tp_total[:, start]  # (B, K)
    first_tp = (np.cumsum(tp_count) - tp_count.ravel()).reshape(tp_count.shape)
    count, first = tp_count[rows, categories], first_tp[rows, categories]
    # searchsorted(rc, recall threshold): rc = tp / n_gt is monotone in tp, so the first index with
    # rc >= r is where the cumulative TP count first reaches `needed`, the fewest TPs whose recall >= r.
    distinct, which = np.unique(n, return_inverse=True)
    needed_by_n = np.stack([np.searchsorted(np.arange(v + 1) / v, RECALL_THRESHOLDS, side="left") for v in distinct])
    # The precision there, from the interpolated precision at every TP (by row, category, then rank),
    # and 0 where the threshold is never reached.
    at_tp = np.append(pr[np.nonzero(tps)], 0.0)
    precision = np.empty((rows.size, len(RECALL_THRESHOLDS)))
    for cells in batches([len(RECALL_THRESHOLDS)] * rows.size):
        needed = needed_by_n[which[cells]]
        reached = needed <= count[cells, None]
        precision[cells] = at_tp[np.where(reached, first[cells, None] + needed - 1, at_tp.size - 1)]
    # Recall 0 needs no TP (needed is 0): COCO samples the category's first detection, if it has any.
    has_dt = stop[categories] > start[categories]
    precision[:, 0] = np.where(has_dt, pr[rows, np.minimum(start[categories], n_dt - 1)], 0.0)
    return rows, categories, precision, count / n


def _final_recall(tps: np.ndarray, n_gt: np.ndarray,
                  category_start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCOeval.accumulate's recall alone (the last of its cumulative recalls), of every row and category
    with ground truth; arguments as :func:`_precision_recall`'s.

    Returns:
        rows (L,), categories (L,): the cells where n_gt > 0; recall (L,) float64.
    """
    rows, categories = np.nonzero(n_gt > 0)
    start, stop = category_start[:-1], category_start[1:]
    counts = np.zeros(n_gt.shape, dtype=np.int64)
    for k, (low, high) in enumerate(zip(start.tolist(), stop.tolist())):  # a category's columns are contiguous
        counts[:, k] = np.count_nonzero(tps[:, low:high], axis=1)
    return rows, categories, counts[rows, categories] / n_gt[rows, categories]


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


class _Masks(Sequence):
    """``results[i]["segmentation"]`` for i in ``index``, looked up when read: results held as columns
    (:class:`segcore.coco.results_table.ResultsTable`) would otherwise be expanded into a dict per detection."""

    def __init__(self, results: Sequence[dict], index: np.ndarray):
        self.results, self.index = results, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.results[int(self.index[i])]["segmentation"]

    def take(self, positions) -> list[dict]:
        """The masks at ``positions`` (an array or a range), in one pass."""
        results = self.results
        return [results[i]["segmentation"] for i in self.index[positions].tolist()]


class CocoEvaluation:
    """One set of results prepared for COCO evaluation: grouped, sorted, areas and IoUs computed once.

    ``match`` and ``accumulate`` can then run several times (other area ranges, ground-truth subsets,
    image subsets) without recomputing IoUs; boundary AP scores a copy with other IoUs (``with_ious``).

    Detections and ground truths are held in COCOeval's grouping, as flat arrays: sorted by category,
    then image (a "pair" is one image and category), then by descending score (stable, the top 100 per
    pair kept) for detections and in the ground-truth file's order for ground truths. N detections,
    G ground truths, P pairs; ``pair_dt_start`` / ``pair_gt_start`` (P + 1,) delimit each pair's share.
    Where a detection and a ground truth of one pair overlap, their IoU is an entry of ``entry_dt``,
    ``entry_gt``, ``entry_iou`` (E,): ``pycocotools.mask.iou`` of the two (for a crowd region,
    intersection over the detection's area); the IoUs that are not entries are 0.

    Args:
        coco_gt: a pycocotools ``COCO``; every image and category in it is evaluated.
        results: COCO results entries (image_id, category_id, score, and "segmentation" as compressed RLE
            for iou_type "segm" or "bbox" [x, y, w, h] for "bbox"); entries on images or categories that
            ``coco_gt`` lacks are left out, as COCOeval does.
        iou_type: "segm" or "bbox".
        across_categories: also compute the IoUs of detections and ground truths of different categories,
            one image at a time (``image_ious``, which per-instance matching reads to tell a confusion of
            classes and would otherwise compute again); the COCO numbers need only each pair's IoUs, which
            took half the time at COCO scale.
    """

    def __init__(self, coco_gt, results: Sequence[dict], iou_type: str, *, across_categories: bool = False):
        assert iou_type in ("segm", "bbox"), iou_type
        self.coco_gt, self.iou_type = coco_gt, iou_type
        self.image_ids = sorted(int(i) for i in coco_gt.getImgIds())
        self.category_ids = sorted(int(c) for c in coco_gt.getCatIds())
        category_index = {c: k for k, c in enumerate(self.category_ids)}
        image_index = {image_id: n for n, image_id in enumerate(self.image_ids)}
        segm = iou_type == "segm"
        n_images = len(self.image_ids)

        anns = [ann for image_id in self.image_ids for ann in coco_gt.imgToAnns.get(image_id, [])
                if ann["category_id"] in category_index]
        gt_image = np.array([image_index[ann["image_id"]] for ann in anns], dtype=np.int64)
        gt_category = np.array([category_index[ann["category_id"]] for ann in anns], dtype=np.int64)
        gt_order = np.lexsort((gt_image, gt_category))  # stable: the file's order within a pair
        anns = [anns[i] for i in gt_order]
        self._gt_anns = anns
        self.gt_image, self.gt_category = gt_image[gt_order], gt_category[gt_order]
        self.gt_ids = np.array([ann["id"] for ann in anns], dtype=np.int64)
        self.gt_area = np.array([ann["area"] for ann in anns], dtype=np.float64)
        self.gt_crowd = np.array([bool(ann.get("iscrowd", 0)) for ann in anns], dtype=bool)
        #: G compressed RLE masks (segm; [] for bbox)
        self.gt_rles: list[dict] = [coco_gt.annToRLE(ann) for ann in anns] if segm else []

        # one pass over the entries (a ResultsTable makes a dict of each entry read), -1 for an unknown id
        columns = [(image_index.get(entry["image_id"], -1), category_index.get(entry["category_id"], -1),
                    entry.get("score")) for entry in results]
        image_column, category_column, score_column = zip(*columns) if columns else ((), (), ())
        image_column, category_column = np.array(image_column, np.int64), np.array(category_column, np.int64)
        found = np.flatnonzero((image_column >= 0) & (category_column >= 0))
        dt_image, dt_category = image_column[found], category_column[found]
        scores = np.array([float(score_column[i]) for i in found.tolist()], dtype=np.float64)
        del columns, image_column, category_column, score_column
        # COCOeval sorts each pair's detections with a stable sort of -score and keeps maxDets of them
        dt_order = np.lexsort((-scores, dt_image, dt_category))
        dt_key = (dt_category * n_images + dt_image)[dt_order]
        rank = np.arange(dt_key.size) - np.searchsorted(dt_key, dt_key)
        dt_order, kept = dt_order[rank < MAX_DETS[-1]], rank < MAX_DETS[-1]
        #: (N,) int64 index into the results list
        self.dt_index = found.astype(np.int64)[dt_order]
        self.dt_rank, self.dt_scores = rank[kept], scores[dt_order]
        self.dt_image, self.dt_category = dt_image[dt_order], dt_category[dt_order]
        if segm:
            assert all("segmentation" in results[i] for i in self.dt_index), "segm needs a mask in every entry"
            #: N compressed RLE masks, read from ``results`` when asked for (see _Masks)
            self.dt_rles: Sequence[dict] = _Masks(results, self.dt_index)
            known = getattr(results, "mask_areas", None)  # checked results carry them (CheckedResults)
            if known is not None and len(known) == len(results):
                self.dt_area = np.asarray(known, dtype=np.float64)[self.dt_index]
            else:  # one call per mask, as COCO.loadRes does (area() of a list overflows under numpy 2)
                self.dt_area = np.array([mask_utils.area(rle) for rle in self.dt_rles], dtype=np.float64)
        else:
            assert all("bbox" in results[i] for i in self.dt_index), "bbox needs a box in every entry"
            self.dt_rles = []
            self.dt_area = np.array([float(results[i]["bbox"][2]) * float(results[i]["bbox"][3])
                                     for i in self.dt_index], dtype=np.float64)

        gt_key = self.gt_category * n_images + self.gt_image
        dt_key = dt_key[kept]
        pair_key, pair = np.unique(np.concatenate([gt_key, dt_key]), return_inverse=True)
        self.pair_category, self.pair_image = pair_key // max(n_images, 1), pair_key % max(n_images, 1)
        self.pair_gt = pair[:gt_key.size]  # (G,) pair of each ground truth
        self.pair_gt_start = np.searchsorted(gt_key, np.append(pair_key, np.iinfo(np.int64).max))
        self.pair_dt_start = np.searchsorted(dt_key, np.append(pair_key, np.iinfo(np.int64).max))

        #: image id -> (D,) result indices, (G,) annotation ids and their (D, G) IoUs, across categories
        self.image_ious: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # boxes one image at a time whatever is kept (box IoUs cost little next to a call), masks by pair
        if across_categories or not segm:
            self._compute_ious(results, anns, keep=across_categories)
        else:
            self._compute_pair_ious(results, anns)

    def for_boxes(self, results: Sequence[dict], *, across_categories: bool = False) -> CocoEvaluation:
        """The box evaluation of the same results, where each entry has a box too: equal to
        ``CocoEvaluation(coco_gt, results, "bbox")``, made from this one's grouping, which is the same."""
        assert self.iou_type == "segm", self.iou_type
        assert all("bbox" in results[i] for i in self.dt_index), "bbox needs a box in every entry"
        other = copy.copy(self)
        other.iou_type, other.dt_rles, other.gt_rles, other.image_ious = "bbox", [], [], {}
        other.dt_area = np.array([float(results[i]["bbox"][2]) * float(results[i]["bbox"][3])
                                  for i in self.dt_index], dtype=np.float64)
        other._compute_ious(results, self._gt_anns, keep=across_categories)
        return other

    def _objects(self, results: Sequence[dict], anns: list[dict], dts, gts) -> tuple[list, list]:
        """What ``pycocotools.mask.iou`` takes for detections ``dts`` and ground truths ``gts`` (positions)."""
        gt_positions = range(len(anns))[gts] if isinstance(gts, slice) else gts
        if self.iou_type == "segm":
            return self.dt_rles.take(dts), [self.gt_rles[g] for g in gt_positions]
        return [results[i]["bbox"] for i in self.dt_index[dts].tolist()], [anns[g]["bbox"] for g in gt_positions]

    def _compute_pair_ious(self, results: Sequence[dict], anns: list[dict]) -> None:
        """The entries, from one IoU call per pair with detections and ground truths."""
        entry_dt, entry_gt, entry_iou = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        both = (np.diff(self.pair_dt_start) > 0) & (np.diff(self.pair_gt_start) > 0)
        for dt0, dt1, gt0, gt1 in zip(self.pair_dt_start[:-1][both].tolist(), self.pair_dt_start[1:][both].tolist(),
                                      self.pair_gt_start[:-1][both].tolist(), self.pair_gt_start[1:][both].tolist()):
            dt_objects, gt_objects = self._objects(results, anns, slice(dt0, dt1), slice(gt0, gt1))
            ious = np.asarray(mask_utils.iou(dt_objects, gt_objects, self.gt_crowd[gt0:gt1].astype(np.uint8).tolist()),
                              dtype=np.float64).reshape(dt1 - dt0, gt1 - gt0)
            d, g = np.nonzero(ious > 0)
            entry_dt.append(d + dt0)
            entry_gt.append(g + gt0)
            entry_iou.append(ious[d, g])
        self._set_entries(np.concatenate(entry_dt), np.concatenate(entry_gt), np.concatenate(entry_iou))

    def _compute_ious(self, results: Sequence[dict], anns: list[dict], keep: bool = True) -> None:
        """The IoU of every detection and ground truth of one image (``image_ious``), and the entries of
        the pairs of one category that overlap."""
        n_images = len(self.image_ids)
        entry_dt, entry_gt, entry_iou = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        dt_by_image = np.split(np.argsort(self.dt_image, kind="stable"), np.searchsorted(
            np.sort(self.dt_image), np.arange(1, n_images)))
        gt_by_image = np.split(np.argsort(self.gt_image, kind="stable"), np.searchsorted(
            np.sort(self.gt_image), np.arange(1, n_images)))
        for image_id, dts, gts in zip(self.image_ids, dt_by_image, gt_by_image):
            if not (dts.size and gts.size):
                continue
            # One call per image, across categories: per-instance matching needs them all.
            dt_objects, gt_objects = self._objects(results, anns, dts, gts)
            ious = np.asarray(mask_utils.iou(dt_objects, gt_objects, self.gt_crowd[gts].astype(np.uint8).tolist()),
                              dtype=np.float64).reshape(dts.size, gts.size)
            if keep:
                self.image_ious[image_id] = (self.dt_index[dts], self.gt_ids[gts], ious)
            d, g = np.nonzero((self.dt_category[dts][:, None] == self.gt_category[gts][None, :]) & (ious > 0))
            entry_dt.append(dts[d])
            entry_gt.append(gts[g])
            entry_iou.append(ious[d, g])
        self._set_entries(np.concatenate(entry_dt), np.concatenate(entry_gt), np.concatenate(entry_iou))

    def _set_entries(self, entry_dt: np.ndarray, entry_gt: np.ndarray, entry_iou: np.ndarray) -> None:
        """Hold the IoU entries and what matching derives from them."""
        order = np.lexsort((entry_gt, entry_dt))
        self.entry_dt, self.entry_gt, self.entry_iou = entry_dt[order], entry_gt[order], entry_iou[order]
        # Each detection's best-overlapping non-crowd ground truth (the first on ties, as argmax), -1 if none.
        regular = ~self.gt_crowd[self.entry_gt]
        by_overlap = np.lexsort((self.entry_gt[regular], -self.entry_iou[regular], self.entry_dt[regular]))
        dts, gts = self.entry_dt[regular][by_overlap], self.entry_gt[regular][by_overlap]
        first = np.r_[True, dts[1:] != dts[:-1]] if dts.size else np.zeros(0, bool)
        self.dt_best_gt = np.full(self.dt_index.size, -1, dtype=np.int64)
        self.dt_best_gt[dts[first]] = gts[first]
        # Pairs where a detection could match several ground truths or a ground truth several detections
        # need COCO's greedy loop; in the others each candidate (IoU >= the lowest threshold) simply matches.
        candidate = self.entry_iou >= _THRESHOLDS.min()
        contested = ((np.bincount(self.entry_dt[candidate], minlength=self.dt_index.size) > 1)[self.entry_dt]
                     | (np.bincount(self.entry_gt[candidate], minlength=self.gt_ids.size) > 1)[self.entry_gt])
        slow = np.zeros(self.pair_category.size, dtype=bool)
        slow[self.pair_gt[self.entry_gt[candidate & contested]]] = True
        self._simple = candidate & ~slow[self.pair_gt[self.entry_gt]]
        self._set_steps(candidate & slow[self.pair_gt[self.entry_gt]])

    def _set_steps(self, contested: np.ndarray) -> None:
        """The entries of the contested pairs that can match, by step of COCO's greedy loop: step k holds the
        k-th detection (by score) with a candidate of each pair, so no step holds two detections of one pair."""
        dt, gt, iou = self.entry_dt[contested], self.entry_gt[contested], self.entry_iou[contested]
        first = np.r_[True, dt[1:] != dt[:-1]] if dt.size else np.zeros(0, bool)
        pair = self.pair_gt[gt[first]]  # of each detection; a pair's detections are contiguous, best first
        detection = np.arange(pair.size)
        pair_first = np.maximum.accumulate(np.where(np.r_[True, pair[1:] != pair[:-1]], detection, 0))
        step = (detection - pair_first)[np.cumsum(first) - 1]
        order = np.argsort(step, kind="stable")  # then by detection and ground truth, as the entries are
        self._steps = (dt[order], gt[order], iou[order])
        self._step_start = np.searchsorted(step[order], np.arange(step.max(initial=-1) + 2))

    def with_ious(self, entry_iou: np.ndarray) -> CocoEvaluation:
        """A copy that scores the same detections with other IoUs: (E,) one per entry, in entry order."""
        other = copy.copy(self)
        other._set_entries(self.entry_dt, self.entry_gt, np.asarray(entry_iou, dtype=np.float64))
        return other

    def annotation_rles(self) -> dict[int, dict]:
        """Annotation id -> compressed RLE of every evaluated ground truth (segm only)."""
        assert self.iou_type == "segm", self.iou_type
        return dict(zip(self.gt_ids.tolist(), self.gt_rles))

    def ious_of(self, image_id: int, result_indices: Sequence[int], ann_ids: Sequence[int]) -> np.ndarray | None:
        """(P, G) IoUs of results (indices into the results list) against annotations of one image, as
        computed for COCO; None if one of them is not evaluated here (beyond maxDets, say), or if the IoUs
        across categories were not computed (``across_categories``)."""
        if not len(result_indices) or not len(ann_ids):
            return np.zeros((len(result_indices), len(ann_ids)))
        if image_id not in self.image_ious:
            return None
        dt_index, gt_ids, ious = self.image_ious[image_id]
        rows = {int(r): i for i, r in enumerate(dt_index)}
        columns = {int(g): j for j, g in enumerate(gt_ids)}
        if not (all(r in rows for r in result_indices) and all(g in columns for g in ann_ids)):
            return None
        return ious[np.ix_([rows[r] for r in result_indices], [columns[g] for g in ann_ids])]

    def match(self, area_ranges: Sequence[tuple[float, float]] = tuple(COCO_AREA_RANGES.values()),
              excluded_gt_ids: set[int] | Sequence[set[int]] | None = None) -> Matches:
        """COCO's matching of every pair, one row per area range (bounds inclusive, as COCOeval).

        ``excluded_gt_ids`` scores a subset of the ground truth, either one set for every row or a list
        with one set per row: the excluded annotations are ignored like crowd regions (not missed when
        unmatched; a detection matched to one is neither a true nor a false positive), and so is an
        unmatched detection whose best-overlapping non-crowd ground truth of its class is excluded, the
        way COCO ignores unmatched detections outside an area range. An unmatched detection that overlaps
        no ground truth of its class is a false positive in every subset.
        """
        ranges = np.asarray(area_ranges, dtype=np.float64).reshape(-1, 2)
        low, high = ranges[:, :1], ranges[:, 1:]
        gt_ignore = self.gt_crowd[None, :] | (self.gt_area < low) | (self.gt_area > high)  # (A, G)
        dt_outside = (self.dt_area < low) | (self.dt_area > high)  # (A, N)
        if excluded_gt_ids is not None:
            per_row = excluded_gt_ids if isinstance(excluded_gt_ids, (list, tuple)) else [excluded_gt_ids] * len(ranges)
            assert len(per_row) == len(ranges), (len(per_row), len(ranges))
            gt_ids = self.gt_ids.tolist()
            excluded = np.array([[g in row for g in gt_ids] for row in per_row], dtype=bool)
            gt_ignore = gt_ignore | excluded
            overlapping = self.dt_best_gt >= 0
            dt_outside[:, overlapping] |= excluded[:, self.dt_best_gt[overlapping]]
        dt_matches, dt_ignore = self._greedy_match(gt_ignore)
        dt_ignore |= (dt_matches == 0) & dt_outside[:, None, :]
        counted = np.concatenate([np.zeros((len(ranges), 1), np.int64), np.cumsum(~gt_ignore, axis=1)], axis=1)
        return Matches(dt_matches, dt_ignore, counted[:, self.pair_gt_start[1:]] - counted[:, self.pair_gt_start[:-1]])

    def _greedy_match(self, gt_ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval.evaluateImg's matching of every pair, for gt_ignore (A, G): dt_matches (A, T, N) int64
        ground truth ids (0: unmatched) and dt_ignore (A, T, N) bool.

        Each detection, best score first, takes the not-yet-matched ground truth with the highest IoU at or
        above the threshold (the last such one in the file's order on ties, as pycocotools' loop does),
        preferring regular ground truths to ignored ones; crowd regions can be matched any number of times.
        Where nothing competes, each candidate simply matches at the thresholds its IoU reaches. Elsewhere
        the loop runs in lockstep over the pairs, every area range and threshold at once: a step matches one
        detection of each pair, the pairs' ground truths are disjoint, so the steps' order is each pair's.
        """
        shape = (gt_ignore.shape[0], len(IOU_THRESHOLDS), self.dt_index.size)
        dt_matches, dt_ignore = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=bool)
        d, g = self.entry_dt[self._simple], self.entry_gt[self._simple]
        reached = self.entry_iou[self._simple][None, :] >= _THRESHOLDS[:, None]  # (T, candidates)
        dt_matches[:, :, d] = np.where(reached, self.gt_ids[g], 0)[None]
        dt_ignore[:, :, d] = reached[None] & gt_ignore[:, None, g]
        taken = np.zeros((shape[0], shape[1], self.gt_ids.size), dtype=bool)
        regular = ~gt_ignore
        for low, high in zip(self._step_start[:-1].tolist(), self._step_start[1:].tolist()):
            d, g, iou = (values[low:high] for values in self._steps)
            new = np.r_[True, d[1:] != d[:-1]]  # where each detection's entries start
            starts, group = np.flatnonzero(new), np.cumsum(new) - 1
            candidates = (iou >= _THRESHOLDS[:, None])[None] & ~taken[:, :, g]  # (A, T, entries)
            preferred = candidates & regular[:, None, g]
            pool = np.where(np.logical_or.reduceat(preferred, starts, axis=2)[:, :, group], preferred, candidates)
            values = np.where(pool, iou, -1.0)
            best = pool & (values == np.maximum.reduceat(values, starts, axis=2)[:, :, group])
            chosen = np.maximum.reduceat(np.where(best, np.arange(d.size), -1), starts, axis=2)  # last on ties
            a, t, k = np.nonzero(chosen >= 0)
            entry = chosen[a, t, k]
            dt_matches[a, t, d[entry]] = self.gt_ids[g[entry]]
            dt_ignore[a, t, d[entry]] = gt_ignore[a, g[entry]]
            single = ~self.gt_crowd[g[entry]]
            taken[a[single], t[single], g[entry][single]] = True
        return dt_matches, dt_ignore

    def restrict(self, matches: Matches, image_ids: set[int]) -> Matches:
        """``matches`` scored on the images ``image_ids`` alone, as ``params.imgIds`` does.

        The other images' ground truths stop counting and their detections become ignored; an ignored
        detection stays in place in the score order without adding a true or false positive, which leaves
        the sampled precision and the recall as if it were absent (pycocotools keeps ignored detections
        in place the same way).
        """
        inside = np.array([image_id in image_ids for image_id in self.image_ids], dtype=bool)
        return Matches(matches.dt_matches, matches.dt_ignore | ~inside[self.dt_image],
                       np.where(inside[self.pair_image], matches.n_gt, 0))

    def accumulate(self, matches: Matches, image_ids: set[int] | None = None, *,
                   precision_limits: Sequence[int] = MAX_DETS) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval.accumulate: precision (T, R, K, A, L) and recall (T, K, A, M), -1 where no ground truth.

        T IoU thresholds, R = 101 recall points, K categories, A rows of ``matches`` (area ranges), M = 3
        detection limits (:data:`MAX_DETS`), L of them in ``precision_limits`` (COCOeval's precision has all
        three; every AP COCO reports reads the last, 100, and the other two cost twice its time at COCO
        scale). ``image_ids`` restricts the evaluation to those images, as ``params.imgIds`` does.
        """
        if image_ids is not None:
            matches = self.restrict(matches, image_ids)
        n_areas, n_categories = matches.n_gt.shape[0], len(self.category_ids)
        n_gt = np.zeros((n_areas, n_categories), dtype=np.int64)
        np.add.at(n_gt, (slice(None), self.pair_category), matches.n_gt)
        # Each category's detections over all images, by descending score (stable, as COCOeval's mergesort).
        order = np.lexsort((-self.dt_scores, self.dt_category))
        category_start = np.searchsorted(self.dt_category[order], np.arange(n_categories + 1))
        matched = (matches.dt_matches != 0)[:, :, order]  # (A, T, N) bool
        counted = ~matches.dt_ignore[:, :, order]
        true_positive, false_positive = matched & counted, ~matched & counted
        del matched, counted
        shape = (n_areas, len(IOU_THRESHOLDS))
        n_rows = int(np.prod(shape))
        row_gt = np.broadcast_to(n_gt[:, None, :], (*shape, n_categories)).reshape(n_rows, n_categories)
        with_precision = [m for m, limit in enumerate(MAX_DETS) if limit in precision_limits]
        # COCOeval leaves -1 where there is no ground truth
        precision = -np.ones((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), n_categories, n_areas, len(with_precision)))
        recall = -np.ones((len(IOU_THRESHOLDS), n_categories, n_areas, len(MAX_DETS)))
        for m, limit in enumerate(MAX_DETS):
            # A detection beyond the limit stays in place as a neither-TP-nor-FP entry: it repeats the
            # previous cumulative counts, which leaves the sampled precision and the recall unchanged
            # (pycocotools keeps its ignored detections in place the same way), so one sort serves all limits.
            within = self.dt_rank[order] < limit
            tps = (true_positive & within).reshape(n_rows, order.size)  # (A, T, N) as rows
            if m not in with_precision:
                rows, categories, final_recall = _final_recall(tps, row_gt, category_start)
                a, t = np.unravel_index(rows, shape)
                recall[t, categories, a, m] = final_recall
                continue
            fps = (false_positive & within).reshape(n_rows, order.size)
            # In blocks of rows: the cumulative counts then take the same memory whatever the number of images.
            block = max(1, ROW_BLOCK_ELEMENTS // max(order.size, 1))
            for first in range(0, n_rows, block):
                rows_in = slice(first, min(first + block, n_rows))
                rows, categories, curve, final_recall = _precision_recall(tps[rows_in], fps[rows_in],
                                                                          row_gt[rows_in], category_start)
                a, t = np.unravel_index(first + rows, shape)
                precision[t, :, categories, a, with_precision.index(m)] = curve
                recall[t, categories, a, m] = final_recall
        return precision, recall

    def summary(self, *, class_names: list[str] | None = None,
                area_ranges: dict[str, tuple[float, float]] | None = None, curves: bool = True) -> dict:
        """Match, accumulate and summarize with COCO's area ranges plus ``area_ranges``; see coco_metrics."""
        ranges = list(COCO_AREA_RANGES.values()) + list((area_ranges or {}).values())
        precision, recall = self.accumulate(self.match(ranges), precision_limits=MAX_DETS[-1:])
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
    """COCOeval.summarize's 12 numbers (same indexing, same means), None for its -1; every AP reads the
    precision at 100 detections, the last of ``precision``'s limits."""
    def summarize(ap: bool, iou: float | None = None, area: int = 0, max_dets: int = 2) -> float | None:
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, [area], [-1]] if ap else s[:, :, [area], [max_dets]]
        return _mean_valid(s)
    return [summarize(True), summarize(True, .5), summarize(True, .75), summarize(True, area=1),
            summarize(True, area=2), summarize(True, area=3), summarize(False, max_dets=0),
            summarize(False, max_dets=1), summarize(False), summarize(False, area=1),
            summarize(False, area=2), summarize(False, area=3)]


def coco_metrics(coco_gt, results: list[dict], iou_type: str, *, class_names: list[str] | None = None,
                 area_ranges: dict[str, tuple[float, float]] | None = None,
                 evaluation: CocoEvaluation | None = None) -> dict:
    """COCO's 12 summary numbers, per-class AP, optional extra area ranges and precision-recall curves.

    Args:
        coco_gt: a pycocotools ``COCO`` holding the ground truth (images, annotations, categories).
        results: COCO results entries, validated (see :func:`segcore.coco.results.load_results`); may be empty.
        iou_type: "segm" (every entry needs a compressed RLE "segmentation") or "bbox".
        class_names: K names of the categories in ascending id order; default the names in ``coco_gt``.
        area_ranges: extra named area ranges in pixels, e.g. {"tiny": (0, 16 ** 2)}, bounds inclusive.
        evaluation: ``CocoEvaluation(coco_gt, results, iou_type)`` when the caller already has it.

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
    evaluation = evaluation or CocoEvaluation(coco_gt, results, iou_type)
    return evaluation.summary(class_names=class_names, area_ranges=area_ranges)


OCCLUSION_BINS = {"0": (-np.inf, 0.0), "0-0.25": (0.0, 0.25), "0.25-0.5": (0.25, 0.5), ">0.5": (0.5, np.inf)}
OBJECTS_PER_IMAGE_BINS = {"1-3": (1, 3), "4-8": (4, 8), "9+": (9, None)}


def breakdowns(coco_gt, results: list[dict], iou_type: str, *, occlusion: dict[int, float],
               class_names: list[str] | None = None, evaluation: CocoEvaluation | None = None) -> dict:
    """AP (IoU .50:.95, all areas, 100 detections) by occlusion and by number of objects per image.

    By occlusion, bins (low, high] of each ground truth's value in ``occlusion`` (annotation id -> hidden
    fraction 0..1; bin "0" holds exactly 0): each bin is scored on all images, with the ground truths of
    other bins ignored (see :meth:`CocoEvaluation.match`: detections matched to them, or unmatched but
    overlapping one of them best, do not count; detections that overlap nothing count as false positives
    in every bin). A ground truth without an occlusion value belongs to no bin.

    By objects per image, images are binned by their number of non-crowd ground-truth instances and each
    bin is COCO evaluated on its images alone (``params.imgIds``); images without objects are in no bin.

    ``class_names`` is accepted so callers can pass coco_metrics' keywords; the bins average over classes.
    ``evaluation`` is ``CocoEvaluation(coco_gt, results, iou_type)`` when the caller already has it.

    Returns:
        {"occlusion": {"0", "0-0.25", "0.25-0.5", ">0.5": AP or None}, "objects_per_image": {"1-3", "4-8",
        "9+": AP or None}}; None where a bin holds no ground truth.
    """
    evaluation = evaluation or CocoEvaluation(coco_gt, results, iou_type)
    regular = evaluation.gt_ids[~evaluation.gt_crowd].tolist()
    excluded = []
    for low, high in OCCLUSION_BINS.values():
        excluded.append({g for g in regular if not (g in occlusion and low < float(occlusion[g]) <= high)})
    # One matching and one accumulation for every bin: a row per occlusion bin, then a row with every
    # ground truth from which each objects-per-image bin keeps its images.
    matches = evaluation.match([ALL_AREAS] * (len(excluded) + 1), excluded_gt_ids=[*excluded, set()])
    objects = np.bincount(evaluation.gt_image[~evaluation.gt_crowd], minlength=len(evaluation.image_ids))
    image_bins = [{evaluation.image_ids[i] for i in np.flatnonzero((objects >= low) & (objects <= (high or np.inf)))}
                  for low, high in OBJECTS_PER_IMAGE_BINS.values()]
    every_gt = matches.rows([len(excluded)])
    # One accumulation per image bin rather than stacked rows: a stack would copy the matches each time.
    at_100 = MAX_DETS[-1:]  # the bins' AP reads the precision at 100 detections alone
    precisions = [evaluation.accumulate(matches.rows(slice(0, len(excluded))), precision_limits=at_100)[0],
                  *(evaluation.accumulate(every_gt, images, precision_limits=at_100)[0] for images in image_bins)]
    ap = [_mean_valid(precision[:, :, :, row, -1]) for precision in precisions for row in range(precision.shape[3])]
    return {"occlusion": dict(zip(OCCLUSION_BINS, ap)),
            "objects_per_image": {name: ap[len(excluded) + b] if images else None
                                  for b, (name, images) in enumerate(zip(OBJECTS_PER_IMAGE_BINS, image_bins))}}
