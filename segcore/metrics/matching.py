"""Per-instance matching of predictions to ground truth, with an error type for every miss.

Ground truth and predictions are matched the way pycocotools' COCOeval matches them at one IoU
threshold, so a row marked ``true_positive`` here is a match COCOeval counts for AP. Every prediction
that is not a match gets an error type in the terms of TIDE (Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors", ECCV 2020), following its reference code (dbolya/tide,
``tidecv/quantify.py``, ``TIDERun._eval_image``), checked in this order:

1. ``localization``: t_b <= IoU < t_f with a GT of the same class (used or not);
2. ``classification``: IoU >= t_f with a GT of another class;
3. ``duplicate``: IoU >= t_f with a same-class GT already matched by a higher-scoring prediction;
4. ``background``: IoU < t_b with every GT;
5. ``both``: anything else, i.e. t_b <= IoU < t_f with a GT of another class.

t_f is ``iou_threshold`` and t_b ``background_threshold``. Differences from TIDE, all deliberate:

- TIDE checks localization before classification (so does this module, against the order the TIDE paper
  lists); its intervals are closed at both ends, here they are half-open [t_b, t_f) so that IoU == t_f
  is always a positive, as in COCO's own matching.
- Matching, crowd regions and maxDets follow COCOeval rather than TIDE's own greedy matcher, so the
  true positives agree with COCO AP.
- Every unmatched GT is ``missed``, so ``missed`` rows are exactly COCO's false negatives. TIDE leaves
  out of its Miss count the GTs that fixing a classification or localization error would recover.

Rows: one per non-crowd GT and one per prediction, a matched pair sharing one row. Crowd GTs are ignore
regions, not objects, and get no row of their own. A prediction COCOeval ignores gets a row with
error_type ``"ignored"`` (:data:`IGNORED`): one matched to a crowd region of its class (gt_id is the crowd
annotation, iou the crowd overlap, intersection over the prediction's area), or one beyond COCOeval's
``maxDets`` = 100 per image and category (iou None).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
from pycocotools import mask as mask_utils

from segcore.metrics.boundary import DILATION_RATIO, paired_boundary_ious
from segcore.metrics.coco import OBJECTS_PER_IMAGE_BINS, OCCLUSION_BINS, CocoEvaluation

ERROR_TYPES = ("true_positive", "classification", "localization", "both", "duplicate", "background", "missed")
#: Error type of predictions COCOeval does not count: on a crowd region, or beyond maxDets.
IGNORED = "ignored"
#: Error types of unmatched predictions, each a false positive.
FALSE_POSITIVE_TYPES = ("classification", "localization", "both", "duplicate", "background")
#: COCOeval's detections kept per image and category.
MAX_DETS = 100
#: COCO's area buckets in pixels: small <= 32², medium <= 96², large above (a boundary value goes to
#: the lower bucket; COCOeval's closed ranges count it in both).
AREA_BUCKETS = (("small", 32 ** 2), ("medium", 96 ** 2), ("large", float("inf")))


def area_bucket(area: float) -> str:
    """COCO's area bucket name of an area in pixels."""
    for name, upper in AREA_BUCKETS:
        if area <= upper:
            return name
    raise ValueError(f"no area bucket holds {area}")


def match_instances(coco_gt, results: list[dict], *, iou_type: str = "segm", iou_threshold: float = 0.5,
                    background_threshold: float = 0.1, occlusion: dict[int, float] | None = None,
                    with_boundary: bool = True, evaluation: CocoEvaluation | None = None,
                    boundary_ious: Mapping[tuple[int, int], float] | None = None) -> list[dict]:
    """Match predictions to ground truth under COCO's rules and give every miss a TIDE error type.

    Args:
        coco_gt: pycocotools ``COCO`` of the ground truth; ``iscrowd`` honoured, an ``occlusion`` field
            per annotation used where present.
        results: COCO results entries (image_id, category_id, score, and "segmentation" as RLE and/or
            "bbox" [x, y, w, h]); every image_id must be in ``coco_gt``.
        iou_type: "segm" (mask IoU) or "bbox" (box IoU; a box missing from an entry is taken from its mask).
        iou_threshold: t_f, the IoU a match needs.
        background_threshold: t_b, below which a prediction overlaps nothing.
        occlusion: annotation id -> occlusion in [0, 1], overriding the annotations' own field (e.g. from
            :func:`occlusion_from_boxes`).
        with_boundary: compute boundary IoU of matched mask pairs.
        evaluation: ``CocoEvaluation(coco_gt, results, iou_type)`` when the caller has it, for its
            ground-truth masks and IoUs.
        boundary_ious: (index into ``results``, annotation id) -> boundary IoU known already (e.g.
            :func:`~segcore.metrics.boundary.candidate_boundary_ious`); the other matches' are computed.

    Returns:
        rows with image_id, gt_id, pred_id (index into ``results``), category (name), score, iou,
        boundary_iou, area_bucket, occlusion, error_type; see the module docstring. ``iou`` is the pair's
        IoU for a match, the best IoU with a same-class GT (0 when there is none) for an unmatched
        prediction, None for a missed GT.
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', not {iou_type!r}.")
    by_image: dict[int, list[int]] = defaultdict(list)
    for index, entry in enumerate(results):
        by_image[entry["image_id"]].append(index)
    unknown = sorted(set(by_image) - set(coco_gt.imgs))
    if unknown:
        raise ValueError(f"Results name image id {unknown[0]}, which is not in the ground truth "
                         f"({len(unknown)} unknown image ids).")
    if evaluation is not None:
        assert evaluation.iou_type == iou_type, (evaluation.iou_type, iou_type)
    known_rles = evaluation.annotation_rles() if evaluation is not None and iou_type == "segm" else {}
    context = {"coco_gt": coco_gt, "results": results, "iou_type": iou_type, "t_f": iou_threshold,
               "t_b": background_threshold, "occlusion": occlusion or {}, "known_rles": known_rles,
               "evaluation": evaluation, "names": {cid: cat.get("name", str(cid)) for cid, cat in coco_gt.cats.items()},
               "areas": _known_mask_areas(results, iou_type)}
    rows, matched = [], []
    for image_id in coco_gt.getImgIds():
        image_rows, image_matched = _match_image(image_id, by_image.get(image_id, []), **context)
        rows += image_rows
        matched += image_matched
    if with_boundary and iou_type == "segm":
        _add_boundary_ious(matched, boundary_ious or {})
    return rows


def _add_boundary_ious(matched: list[tuple[dict, dict, dict]], known: Mapping[tuple[int, int], float]) -> None:
    """Fill the boundary_iou of matched (row, prediction RLE, ground-truth RLE): from ``known``, or
    computed, all in one batch."""
    for row, _, _ in matched:
        row["boundary_iou"] = known.get((row["pred_id"], row["gt_id"]))
    missing = [pair for pair in matched if pair[0]["boundary_iou"] is None]
    computed = paired_boundary_ious([dt for _, dt, _ in missing], [gt for _, _, gt in missing], DILATION_RATIO)
    for (row, _, _), value in zip(missing, computed.tolist()):
        row["boundary_iou"] = value


def _known_mask_areas(results: list[dict], iou_type: str) -> list[float] | None:
    """Each result's mask area where checking the results found them (CheckedResults.mask_areas), else None."""
    areas = getattr(results, "mask_areas", None)
    return areas.tolist() if iou_type == "segm" and areas is not None and len(areas) == len(results) else None


def _match_image(image_id, pred_ids, *, coco_gt, results, iou_type, t_f, t_b, occlusion, known_rles, evaluation,
                 names, areas):
    """The rows of one image, and its matches as (row, prediction RLE, ground-truth RLE) (segm)."""
    gts = coco_gt.imgToAnns.get(image_id, [])
    image = coco_gt.imgs[image_id]
    # COCOeval keeps the top maxDets per image and category, sorted stably by score.
    kept, dropped = [], []
    for category_id in dict.fromkeys(results[i]["category_id"] for i in pred_ids):
        ranked = sorted((i for i in pred_ids if results[i]["category_id"] == category_id),
                        key=lambda i: -results[i]["score"])
        kept += ranked[:MAX_DETS]
        dropped += ranked[MAX_DETS:]
    kept.sort(key=lambda i: -results[i]["score"])
    preds = [results[i] for i in kept]

    gt_geometry = [_gt_geometry(coco_gt, ann, iou_type, known_rles) for ann in gts]
    pred_geometry = [_pred_geometry(entry, iou_type, image) for entry in preds]
    iscrowd = np.array([bool(ann.get("iscrowd", 0)) for ann in gts], dtype=bool)
    # (P, G); a crowd column holds intersection / prediction area, as COCOeval uses it.
    ious = evaluation.ious_of(image_id, kept, [ann["id"] for ann in gts]) if evaluation is not None else None
    if ious is None:
        ious = np.asarray(mask_utils.iou(pred_geometry, gt_geometry, iscrowd.astype(np.uint8).tolist()),
                          dtype=np.float64).reshape(len(preds), len(gts))
    pred_cls = np.array([entry["category_id"] for entry in preds], dtype=np.int64)
    gt_cls = np.array([ann["category_id"] for ann in gts], dtype=np.int64)
    match = _coco_match(ious, pred_cls, gt_cls, iscrowd, t_f)

    # TIDE's error tests look at real objects only: crowd columns zeroed.
    same = (pred_cls[:, None] == gt_cls[None, :]) & ~iscrowd[None, :]
    other = (pred_cls[:, None] != gt_cls[None, :]) & ~iscrowd[None, :]
    used = np.zeros(len(gts), bool)
    used[[g for g in match if g >= 0 and not iscrowd[g]]] = True
    # each prediction's best IoU of each kind, one row at a time below (lists: a float per read)
    same_iou = np.where(same, ious, 0.0).max(1, initial=0.0).tolist()
    other_iou = np.where(other, ious, 0.0).max(1, initial=0.0).tolist()
    used_same_iou = np.where(same & used[None, :], ious, 0.0).max(1, initial=0.0).tolist()

    rows, matched_pred, matched = [], {}, []
    for p, g in enumerate(match):
        if g >= 0 and not iscrowd[g]:
            matched_pred[g] = p
    for g, ann in enumerate(gts):
        if iscrowd[g]:
            continue
        area = ann["area"] if "area" in ann else _pred_area(gt_geometry[g], iou_type)
        row = _row(image_id, names, ann["category_id"], gt_id=ann["id"], area=area,
                   occlusion=occlusion.get(ann["id"], ann.get("occlusion")))
        p = matched_pred.get(g)
        if p is None:
            row["error_type"] = "missed"
        else:
            row.update(pred_id=kept[p], score=preds[p]["score"], iou=float(ious[p, g]), error_type="true_positive")
            if iou_type == "segm":
                matched.append((row, pred_geometry[p], gt_geometry[g]))
        rows.append(row)
    for p, entry in enumerate(preds):
        g = match[p]
        if g >= 0 and not iscrowd[g]:
            continue
        row = _row(image_id, names, entry["category_id"], pred_id=kept[p], score=entry["score"],
                   area=areas[kept[p]] if areas is not None else _pred_area(pred_geometry[p], iou_type))
        if g >= 0:
            row.update(gt_id=gts[g]["id"], iou=float(ious[p, g]), error_type=IGNORED)
        else:
            row["iou"] = same_iou[p]
            row["error_type"] = _error_type(same_iou[p], other_iou[p], used_same_iou[p], t_f, t_b)
        rows.append(row)
    for index in dropped:
        entry = results[index]
        area = areas[index] if areas is not None else _pred_area(_pred_geometry(entry, iou_type, image), iou_type)
        rows.append(_row(image_id, names, entry["category_id"], pred_id=index, score=entry["score"],
                         area=area, error_type=IGNORED))
    return rows, matched


def _coco_match(ious: np.ndarray, pred_cls: np.ndarray, gt_cls: np.ndarray, iscrowd: np.ndarray,
                t: float) -> list[int]:
    """COCOeval.evaluateImg's greedy matching at one threshold, per category.

    ``ious`` (P, G) with predictions in descending score order. Returns, per prediction, the GT column it
    matched or -1. Kept line for line with pycocotools so that ties resolve the same way: GTs are visited
    non-crowd first, a later GT with equal IoU wins, a crowd GT may be matched many times, and a
    prediction falls back on a crowd GT only when no real object is left for it.
    """
    match = [-1] * len(pred_cls)
    for category in set(pred_cls.tolist()):  # categories match independently
        dts = np.flatnonzero(pred_cls == category)
        gts = np.flatnonzero(gt_cls == category)
        gts = gts[np.argsort(iscrowd[gts], kind="mergesort")]
        taken = np.zeros(len(gts), bool)
        for d in dts:
            best, m = min(t, 1 - 1e-10), -1
            for j, g in enumerate(gts):
                if taken[j] and not iscrowd[g]:
                    continue
                if m > -1 and not iscrowd[gts[m]] and iscrowd[g]:
                    break
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], j
            if m > -1:
                taken[m] = True
                match[d] = int(gts[m])
    return match


def _error_type(same_iou: float, other_iou: float, used_same_iou: float, t_f: float, t_b: float) -> str:
    """TIDE's error of an unmatched prediction from its best IoUs with same-class, other-class and
    already-matched same-class GTs, tested in TIDE's order."""
    if t_b <= same_iou < t_f:
        return "localization"
    if other_iou >= t_f:
        return "classification"
    if used_same_iou >= t_f:
        return "duplicate"
    if max(same_iou, other_iou) < t_b:
        return "background"
    return "both"


def _row(image_id, names, category_id, *, gt_id=None, pred_id=None, score=None, area, occlusion=None,
         error_type=None) -> dict:
    return {"image_id": image_id, "gt_id": gt_id, "pred_id": pred_id,
            "category": names.get(category_id, str(category_id)), "score": score, "iou": None,
            "boundary_iou": None, "area_bucket": area_bucket(area), "occlusion": occlusion, "error_type": error_type}


def _gt_geometry(coco_gt, ann: dict, iou_type: str, known_rles: Mapping[int, dict]):
    if iou_type == "bbox":
        return np.asarray(ann["bbox"], dtype=np.float64)
    return known_rles[ann["id"]] if ann["id"] in known_rles else coco_gt.annToRLE(ann)


def _pred_geometry(entry: dict, iou_type: str, image: dict):
    segmentation = entry.get("segmentation")
    if isinstance(segmentation, list):  # polygons
        rles = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
        segmentation = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        segmentation = mask_utils.frPyObjects(segmentation, *segmentation["size"])
    if iou_type == "segm":
        if segmentation is None:
            raise ValueError(f"A result for image {entry['image_id']} has no segmentation; "
                             "score box-only results with iou_type='bbox'.")
        return segmentation
    if "bbox" in entry:
        return np.asarray(entry["bbox"], dtype=np.float64)
    return mask_utils.toBbox(segmentation)


def _pred_area(geometry, iou_type: str) -> float:
    if iou_type == "bbox":
        return float(geometry[2] * geometry[3])
    return float(mask_utils.area(geometry))


def per_image_metrics(rows: list[dict], coco_gt, *, score_threshold: float = 0.5) -> list[dict]:
    """TP, FP, FN, precision, recall, F1 and matched IoU of every image, from :func:`match_instances` rows.

    Only predictions scoring at least ``score_threshold`` count, since a deployed model keeps those;
    COCO AP instead sweeps all scores. Because matching is greedy in descending score, the matches of
    the kept predictions are the ones they would get on their own, so the rows need no re-matching.

    Empty cases: precision is None without kept predictions, recall None without objects; F1 is
    2·TP / (2·TP + FP + FN), which is 0 when either side is empty and the other not, and 1.0 for an image
    with no objects and no kept predictions: nothing was there and nothing was claimed.

    Returns:
        one row per GT image, images without objects or predictions too: image_id, file_name,
        n_objects (non-crowd GT), mean_occlusion, tp, fp, fn, precision, recall, f1, mean_iou and
        mean_boundary_iou of the kept matches (None where undefined).
    """
    by_image: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_image[row["image_id"]].append(row)
    out = []
    for image_id in coco_gt.getImgIds():
        image_rows = by_image.get(image_id, [])
        kept = [r for r in image_rows if r["score"] is not None and r["score"] >= score_threshold]
        matches = [r for r in kept if r["error_type"] == "true_positive"]
        n_objects = sum(1 for a in coco_gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0))
        tp = len(matches)
        fp = sum(1 for r in kept if r["error_type"] in FALSE_POSITIVE_TYPES)
        fn = n_objects - tp
        occlusions = [r["occlusion"] for r in image_rows
                      if r["error_type"] in ("true_positive", "missed") and r["occlusion"] is not None]
        boundary = [r["boundary_iou"] for r in matches if r["boundary_iou"] is not None]
        out.append({
            "image_id": image_id, "file_name": coco_gt.imgs[image_id].get("file_name"), "n_objects": n_objects,
            "mean_occlusion": _mean(occlusions), "tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "mean_iou": _mean([r["iou"] for r in matches]), "mean_boundary_iou": _mean(boundary),
        })
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def calibration(rows: list[dict], bins: int = 10, *, matched_only: bool = False) -> dict:
    """Predicted score against realised mask IoU, in equal-width score bins over [0, 1].

    A prediction's realised IoU is its IoU with the GT it matched, and 0 for every unmatched prediction,
    whatever its error: a duplicate or a poorly placed box earns nothing in COCO AP, so a score that
    trusts it is over-confident. ``matched_only`` keeps the true positives alone, which shows whether the
    score tracks mask quality once an object is found. Ignored predictions are left out.

    Returns:
        {"bins": [{"low", "high", "count", "mean_score", "mean_iou"}], "expected_calibration_error"}: the
        means are None in an empty bin; the ECE is Σ count/N · |mean_score − mean_iou| (None without
        predictions). A score of 1.0 falls in the last bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}.")
    wanted = ("true_positive",) if matched_only else ("true_positive", *FALSE_POSITIVE_TYPES)
    chosen = [r for r in rows if r["pred_id"] is not None and r["error_type"] in wanted]
    scores = np.array([r["score"] for r in chosen], dtype=np.float64)
    realised = np.array([r["iou"] if r["error_type"] == "true_positive" else 0.0 for r in chosen], dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    table, gap = [], 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        mean_score = float(scores[inside].mean()) if count else None
        mean_iou = float(realised[inside].mean()) if count else None
        if count:
            gap += count * abs(mean_score - mean_iou)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                      "mean_score": mean_score, "mean_iou": mean_iou})
    return {"bins": table, "expected_calibration_error": gap / len(chosen) if chosen else None}


def occlusion_from_boxes(coco_gt) -> dict[int, float]:
    """A stand-in occlusion for datasets without the field: each object's largest box overlap.

    For every non-crowd annotation: max over the other non-crowd objects of its image of
    intersection area / own box area, in [0, 1]; 0 for an object alone or with an empty box. Boxes
    overlap whether the front or the back object is hidden, so this over-counts, but it ranks crowded
    objects above isolated ones, which is what the breakdown needs.

    Returns:
        annotation id -> overlap.
    """
    out: dict[int, float] = {}
    for anns in coco_gt.imgToAnns.values():
        objects = [a for a in anns if not a.get("iscrowd", 0)]
        if not objects:
            continue
        boxes = np.array([a["bbox"] for a in objects], dtype=np.float64).reshape(-1, 4)  # (N, 4) xywh
        x1, y1 = boxes[:, 0], boxes[:, 1]
        x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
        width = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
        height = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
        intersection = width * height  # (N, N)
        np.fill_diagonal(intersection, 0.0)
        own = boxes[:, 2] * boxes[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(own[:, None] > 0, intersection / own[:, None], 0.0)
        for ann, value in zip(objects, np.clip(fraction.max(axis=1), 0.0, 1.0)):
            out[ann["id"]] = float(value)
    return out


def mean_iou_by_bins(rows: list[dict], per_image: list[dict]) -> dict:
    """Mean mask IoU of the ground-truth instances, by area bucket, occlusion bin and objects per image.

    Each non-crowd ground truth counts with the IoU of the prediction matched to it at IoU 0.5 under
    COCO's rules, and 0 when it was missed, so a bin's value says how well its objects were found and
    outlined together: AP's companion in the breakdowns.

    Args:
        rows: :func:`match_instances` rows.
        per_image: :func:`per_image_metrics` rows (for each image's number of objects).

    Returns:
        {"area": {"small", "medium", "large"}, "occlusion": {bins of OCCLUSION_BINS},
         "objects_per_image": {bins of OBJECTS_PER_IMAGE_BINS}}, each value a mean IoU or None for an empty bin.
    """
    objects = {row["image_id"]: row["n_objects"] for row in per_image}
    truths = [r for r in rows if r["gt_id"] is not None and r["error_type"] in ("true_positive", "missed")]

    def mean(selected: list[dict]) -> float | None:
        return float(np.mean([r["iou"] or 0.0 for r in selected])) if selected else None

    return {
        "area": {name: mean([r for r in truths if r["area_bucket"] == name]) for name, _ in AREA_BUCKETS},
        "occlusion": {name: mean([r for r in truths if r["occlusion"] is not None and low < r["occlusion"] <= high])
                      for name, (low, high) in OCCLUSION_BINS.items()},
        "objects_per_image": {name: mean([r for r in truths if low <= objects[r["image_id"]] <= (high or np.inf)])
                              for name, (low, high) in OBJECTS_PER_IMAGE_BINS.items()},
    }
