"""Scoring predictions in COCO results format against COCO ground truth, into an eval folder.

Shared by ``segcore eval RUN_DIR`` (a model's predictions, with its semantic maps and speed) and
``segcore eval --predictions`` (another tool's results file). No torch here, so that scoring a results
file starts fast. The eval folder (a contract, see DESIGN.md)::

    metrics.json  predictions.json  per_image.csv  per_instance.csv  curves.json

is written by :func:`segcore.runs.write_eval_files`: to a temporary folder beside its place, renamed there,
so a reader or a kill never meets half of one.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segcore import runs
from segcore.background import Background
from segcore.coco.instances import read_instances
from segcore.coco.results import has_masks
from segcore.coco.rle import batches, decode_compressed_counts, distinct_sorted, foreground_runs
from segcore.collection import collector_paused
from segcore.data import layout
from segcore.data.label_maps import paint_segments, painting_order_from_areas
from segcore.errors import SegcoreError
from segcore.metrics.attention import focus_of_matches
from segcore.metrics.boundary import boundary_metrics, candidate_boundary_ious
from segcore.metrics.coco import CocoEvaluation, breakdowns, coco_metrics
from segcore.metrics.matching import (
    calibration,
    match_instances,
    mean_iou_by_bins,
    occlusion_from_boxes,
    per_image_metrics,
)
from segcore.metrics.semantic import segment_scores, semantic_scores


def annotation_occlusion(coco_gt) -> tuple[dict[int, float], str]:
    """Each GT annotation's occlusion and where it comes from: the dataset's ``occlusion`` field, or
    (for datasets without one) each object's largest box overlap with the others."""
    annotations = coco_gt.dataset.get("annotations", [])
    if annotations and all(isinstance(a.get("occlusion"), (int, float)) for a in annotations):
        return {a["id"]: float(a["occlusion"]) for a in annotations}, "annotation occlusion field"
    return occlusion_from_boxes(coco_gt), "largest box overlap with the other objects (no occlusion field)"


def semantic_from_results(coco_gt, results: list[dict], num_classes: int, labels: dict[int, int], *,
                          evaluation: CocoEvaluation | None = None) -> tuple[np.ndarray, dict[int, dict]]:
    """Confusion matrix and per-image semantic scores of results whose instances are painted in score
    order, highest last, against the ground truth painted smaller-in-front (as the data layer does).

    Both label maps are painted from the masks' RLE runs (:func:`segcore.data.label_maps.paint_segments`),
    never expanded to pixels, a batch of images at a time; the counts are those of
    :func:`segcore.data.label_maps.paint_instances`.

    Args:
        labels: category id -> class label 1..K-1.
        evaluation: a segm ``CocoEvaluation`` of ``results``, whose ground-truth masks are reused.

    Returns:
        (K, K) int64 matrix, and image_id -> {"semantic_miou", "pixel_accuracy"} for every image.
    """
    image_ids = coco_gt.getImgIds()
    known = evaluation.annotation_rles() if evaluation is not None else {}
    truth = [[(known[ann["id"]] if ann["id"] in known else coco_gt.annToRLE(ann), labels[ann["category_id"]])
              for ann in coco_gt.imgToAnns.get(image_id, [])] for image_id in image_ids]
    predicted: list[list[tuple[dict, int, float]]] = [[] for _ in image_ids]
    position = {image_id: i for i, image_id in enumerate(image_ids)}
    for entry in results:
        predicted[position[entry["image_id"]]].append((entry["segmentation"], labels[entry["category_id"]],
                                                       entry["score"]))
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    per_image: dict[int, dict] = {}
    sizes = [sum(len(mask[0]["counts"]) for mask in truth[i] + predicted[i]) for i in range(len(image_ids))]
    for batch in batches(sizes):
        batch_matrix, scores = _semantic_batch([coco_gt.imgs[i] for i in image_ids[batch]], truth[batch],
                                               predicted[batch], num_classes)
        matrix += batch_matrix
        for i, image_id in enumerate(image_ids[batch]):
            per_image[image_id] = {"semantic_miou": float(scores["mIoU"][i]),
                                   "pixel_accuracy": float(scores["pixel_accuracy"][i])}
    return matrix, per_image


def _semantic_batch(images: list[dict], truth: list[list[tuple[dict, int]]],
                    predicted: list[list[tuple[dict, int, float]]], num_classes: int):
    """segment_scores of some images, with their (RLE, label) ground truths and (RLE, label, score)
    predictions."""
    pixels = np.array([image["height"] * image["width"] for image in images], dtype=np.int64)
    image_ends = np.cumsum(pixels)
    gt_images = np.repeat(np.arange(len(images)), [len(masks) for masks in truth])
    gt = [mask for masks in truth for mask in masks]
    gt_owner, gt_ends = _pixel_space_runs([rle for rle, _ in gt], gt_images, image_ends - pixels)
    dt_images = np.repeat(np.arange(len(images)), [len(masks) for masks in predicted])
    dt = [mask for masks in predicted for mask in masks]
    dt_owner, dt_ends = _pixel_space_runs([rle for rle, _, _ in dt], dt_images, image_ends - pixels)

    # Both maps are painted on one set of segments, cut at every run's ends and every image's end.
    cuts, index = distinct_sorted(np.concatenate([[0], image_ends, gt_ends.ravel(), dt_ends.ravel()]))
    gt_spans = index[1 + len(images):1 + len(images) + gt_ends.size].reshape(-1, 2)
    dt_spans = index[1 + len(images) + gt_ends.size:].reshape(-1, 2)
    areas = np.bincount(gt_owner, weights=gt_ends[:, 1] - gt_ends[:, 0], minlength=len(gt))
    truth_map = _paint(gt_owner, gt_spans, painting_order_from_areas(areas, gt_images),
                       np.array([label for _, label in gt], dtype=np.int64), cuts.size - 1)
    scores = np.array([score for _, _, score in dt], dtype=np.float64)
    predicted_map = _paint(dt_owner, dt_spans, np.lexsort((scores, dt_images)),  # ascending score: highest last
                           np.array([label for _, label, _ in dt], dtype=np.int64), cuts.size - 1)
    segment_images = np.repeat(np.arange(len(images)), np.diff(index[:1 + len(images)]))
    return segment_scores(truth_map, predicted_map, np.diff(cuts), segment_images, num_classes, len(images))


def _pixel_space_runs(rles: list[dict], images: np.ndarray, image_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground runs of compressed RLE masks placed in the images' pixel space: owner (F,) and
    ends (F, 2) [begin, end), which ascend within each mask."""
    runs, starts, valid = decode_compressed_counts([rle["counts"] for rle in rles])
    assert valid.all(), "masks reaching the metrics are validated RLE"
    owner, begin, end = foreground_runs(runs, starts)
    offset = image_starts[images][owner]
    return owner, np.column_stack([begin + offset, end + offset])


def _paint(owner: np.ndarray, spans: np.ndarray, order: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
    """paint_segments with the masks painted in ``order``, back to front."""
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return paint_segments(rank[owner], spans[:, 0], spans[:, 1], labels[order], n_segments)


def _coco_sections(metrics: dict[str, Any], coco_gt, results: Sequence[dict], evaluations: dict[str, CocoEvaluation],
                   class_names: list[str], area_ranges: dict[str, tuple[float, float]] | None) -> dict[str, Any]:
    """metrics.json's "segm" (where there are masks) and "bbox" sections, added to ``metrics``; returns
    curves.json's precision-recall curves by IoU type."""
    curves: dict[str, Any] = {}
    for kind, evaluation in evaluations.items():
        scores = coco_metrics(coco_gt, results, kind, class_names=class_names, area_ranges=area_ranges,
                              evaluation=evaluation)
        curves[kind] = scores.pop("curves", None)
        metrics[kind] = scores
    return curves


def _side_work(coco_gt, results: Sequence[dict], labels: dict[int, int], paint: bool, staging: Path) -> Background:
    """The semantic maps of ``results`` (where ``paint``, else None), then predictions.json written into
    ``staging``: the longest parts of the eval folder at COCO scale and independent of the rest, so on the
    other core from now on. A list is the fork's own copy; a ResultsTable reads a spill file that the two
    would both flush, so it is worked on here when asked for."""
    def work():
        painted = semantic_from_results(coco_gt, results, len(labels) + 1, labels) if paint else None
        runs.write_predictions(staging, results)
        return painted
    return Background(work, fork=isinstance(results, list))


def _evaluations(coco_gt, results: Sequence[dict], masks: bool) -> dict[str, CocoEvaluation]:
    """The COCO evaluations of the eval folder by IoU type, with the IoUs across categories for the kind that
    per-instance matching reads (it tells a confusion of classes from them)."""
    if not masks:
        return {"bbox": CocoEvaluation(coco_gt, results, "bbox", across_categories=True)}
    segm = CocoEvaluation(coco_gt, results, "segm", across_categories=True)
    return {"segm": segm, "bbox": segm.for_boxes(results)}  # from the masks' grouping, which is the same


def _boundary_section(metrics: dict[str, Any], coco_gt, results: Sequence[dict], evaluation: CocoEvaluation,
                      class_names: list[str]) -> dict[tuple[int, int], float]:
    """metrics.json's "boundary" section, added to ``metrics``; returns the boundary IoUs of the candidate
    pairs it was computed from, which per-instance matching reads too."""
    boundary_ious = candidate_boundary_ious(evaluation)
    metrics["boundary"] = boundary_metrics(coco_gt, results, class_names=class_names, evaluation=evaluation,
                                           boundary_ious=boundary_ious)
    return boundary_ious


#: The stages of reading another tool's results file (:func:`evaluate_results`), before write_eval_folder's.
READING_STAGES = ("reading the ground truth", "reading the results")
#: The stages of :func:`write_eval_folder`, in order, as a progress bar names them.
STAGES = ("COCO AP and boundary IoU", "breakdowns", "matching each instance", "semantic maps", "writing the folder")


def _provenance(speed: dict | None, source: dict | None, skipped: dict | None) -> dict[str, Any]:
    """metrics.json's sections that say how the numbers were made: speed (a timed model), source, what
    ``--skip-invalid`` left out (where it was allowed to), and when."""
    return {**({"speed": speed} if speed is not None else {}), "source": source or {},
            **({"skipped": skipped} if skipped is not None else {}), "created": runs.now()}


@collector_paused()
def write_eval_folder(out: str | Path, *, coco_gt, results: Sequence[dict], class_names: list[str], name: str,
                      semantic_matrix: np.ndarray | None = None, per_image_semantic: dict[int, dict] | None = None,
                      speed: dict | None = None, area_ranges: dict[str, tuple[float, float]] | None = None,
                      source: dict | None = None, masks: bool | None = None, skipped: dict | None = None,
                      attention: Sequence[np.ndarray | None] | None = None,
                      on_stage: Callable[[str], None] | None = None) -> Path:
    """Score ``results`` against ``coco_gt`` and write the eval folder ``out``.

    Args:
        coco_gt: pycocotools COCO of the ground truth.
        results: COCO results entries (masks as compressed RLE with counts as str, or boxes only), a
            list or a :class:`segcore.coco.results_table.ResultsTable`.
        class_names: names of the categories, in sorted category-id order.
        name: the run's name.
        semantic_matrix: (K+1, K+1) confusion matrix from the model's own semantic maps; computed from
            the painted results when absent and the results have masks.
        per_image_semantic: image_id -> {"semantic_miou", "pixel_accuracy"}, with ``semantic_matrix``.
        speed: the speed section, for a model that was timed.
        area_ranges: extra named area ranges for AP.
        source: what was evaluated (run, checkpoint, data, split, or the results file).
        masks: whether the results are masks; by default, whether any entry has one. A model that answers
            masks is scored on masks even when it found nothing (its mask AP is then 0, not absent).
        skipped: what ``--skip-invalid`` left out, {"ground_truth": {reason: count}, "predictions": {...}};
            recorded as metrics.json's "skipped" (absent when nothing was allowed to be skipped).
        attention: for a model with spatial attention, each result's ``(h, w)`` attention map in its RoI
            (None for a result without one): per_instance.csv gains ``attention_focus`` and metrics.json an
            "attention" section (:func:`segcore.metrics.attention.focus_of_matches`).
        on_stage: called with the name of each of :data:`STAGES` as it starts, e.g. by a progress bar.

    Returns:
        ``out``.
    """
    out = Path(out)
    masks = has_masks(results) if masks is None else masks
    iou_type = "segm" if masks else "bbox"
    category_ids = sorted(coco_gt.getCatIds())
    labels = {category_id: label for label, category_id in enumerate(category_ids, start=1)}
    occlusion, occlusion_source = annotation_occlusion(coco_gt)

    stage = on_stage or (lambda name: None)
    metrics: dict[str, Any] = {"name": name, "n_images": len(coco_gt.getImgIds())}
    staging, side = runs.eval_staging(out), None
    try:
        stage(STAGES[0])
        side = _side_work(coco_gt, results, labels, masks and semantic_matrix is None, staging)
        evaluations = _evaluations(coco_gt, results, masks)
        curves = _coco_sections(metrics, coco_gt, results, evaluations, class_names, area_ranges)
        boundary_ious = _boundary_section(metrics, coco_gt, results, evaluations["segm"], class_names) if masks \
            else None
        stage(STAGES[1])
        breakdown = breakdowns(coco_gt, results, iou_type, occlusion=occlusion, class_names=class_names,
                               evaluation=evaluations[iou_type])
        stage(STAGES[2])
        rows = match_instances(coco_gt, results, iou_type=iou_type, occlusion=occlusion, with_boundary=masks,
                               evaluation=evaluations[iou_type], boundary_ious=boundary_ious)
        stage(STAGES[3])
        painted = side.result()
        semantic_matrix, per_image_semantic = painted or (semantic_matrix, per_image_semantic)
        if semantic_matrix is not None:
            metrics["semantic"] = semantic_scores(semantic_matrix, ["background", *class_names])
        metrics.update(breakdowns=breakdown, occlusion_source=occlusion_source)
        if attention is not None and masks:
            metrics["attention"] = focus_of_matches(rows, results, coco_gt, attention)
        metrics["calibration"] = curves["calibration"] = calibration(rows)
        per_image = per_image_metrics(rows, coco_gt)
        metrics["breakdowns"]["mean_iou"] = mean_iou_by_bins(rows, per_image)
        for row in per_image:
            row.update((per_image_semantic or {}).get(row["image_id"], {}))
        metrics.update(_provenance(speed, source, skipped))
        stage(STAGES[4])
        runs.write_eval_files(out, metrics=metrics, predictions=None, per_image=per_image, per_instance=rows,
                              curves=curves, staging=staging)
    except BaseException:
        if side is not None:
            side.cancel()  # stopped before the folder it writes into is removed
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def ground_truth_of(source: runs.DatasetSource):
    """The ground truth an eval folder was scored against (:func:`segcore.runs.dataset_source`), read as the
    evaluation read it: with what --skip-invalid left out of it left out again, so that ids and counts match."""
    return load_ground_truth(source.annotations, skip_invalid=source.skip_invalid,
                             image_dir=source.images if source.skip_missing_images else None)


def load_ground_truth(path: str | Path, *, skip_invalid: bool = False, image_dir: str | Path | None = None):
    """A COCO instances file as a pycocotools COCO object, checked as strictly as a dataset's annotations
    (:func:`segcore.coco.instances.read_instances`: pycocotools trusts its input, and a bad RLE in a ground truth
    would corrupt memory), or one DatasetError sentence naming the file and the id.

    With ``skip_invalid`` invalid annotations are left out instead (see :func:`evaluate_results` for the
    count of them). Image files are looked for only in ``image_dir``, where given: scoring needs only the JSON.
    """
    return read_instances(path, skip_invalid=skip_invalid, require_masks=False, image_dir=image_dir).coco()


@collector_paused()
def coco_numbers(gt: str | Path, predictions: str | Path, *, skip_invalid: bool = False,
                 area_ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, dict[str, Any]]:
    """COCO's numbers alone for another tool's results file (``segcore eval --coco-only``): the files are
    checked as :func:`evaluate_results` checks them, and nothing is written.

    Returns:
        {"segm": ..., "bbox": ...} (segm only where the results have masks), each COCO's 12 summary numbers
        ("AP" … "ARl", equal to ``COCOeval.stats``, None for its -1), "per_class" AP and, with
        ``area_ranges``, "area_ranges".
    """
    from segcore.coco.results import load_results

    gt = Path(gt)
    coco_gt = read_instances(gt, skip_invalid=skip_invalid, require_masks=False).coco()
    results = load_results(predictions, coco_gt, gt_name=gt.name, skipped=Counter() if skip_invalid else None)
    kinds = ("segm", "bbox") if has_masks(results) else ("bbox",)
    if "segm" in kinds and any("segmentation" not in a for a in coco_gt.dataset["annotations"]):
        raise SegcoreError(f"{gt} has annotations with a box but no segmentation, so masks cannot be scored "
                           f"against it; pass box-only results, or a ground truth with masks.")

    def numbers(kind: str) -> dict[str, Any]:
        metrics = coco_metrics(coco_gt, results, kind, area_ranges=area_ranges)
        metrics.pop("curves", None)
        return metrics

    boxes = Background(lambda: numbers("bbox"))  # on the other core, while this one scores the masks
    try:
        scores = {"segm": numbers("segm")} if "segm" in kinds else {}
    except BaseException:
        boxes.cancel()
        raise
    scores["bbox"] = boxes.result()
    return scores


@collector_paused()
def evaluate_results(gt: str | Path, predictions: str | Path, out: str | Path, *, name: str | None = None,
                     area_ranges: dict[str, tuple[float, float]] | None = None, skip_invalid: bool = False,
                     on_stage: Callable[[str], None] | None = None) -> Path:
    """Import another tool's COCO results file as an external run and score it.

    ``out`` becomes a run directory with ``run.json`` (kind "external", no checkpoints) and the eval
    folder ``out/evals/<dataset>-<split>``, named from a ground-truth path in COCO layout
    (``DATASET/annotations/instances_<split>.json``), else from the file's name.

    Both files are checked (:mod:`segcore.coco.instances`, :mod:`segcore.coco.results`): the first invalid
    annotation or entry is refused with a sentence naming it, or with ``skip_invalid`` every invalid one
    is left out and counted by reason in metrics.json's "skipped"
    ({"ground_truth": {reason: count}, "predictions": {reason: count}}).
    ``on_stage`` is called with the name of each of :data:`READING_STAGES`, then :data:`STAGES`, as it starts.

    Returns:
        the eval folder.
    """
    from segcore.coco.results import load_results

    stage = on_stage or (lambda name: None)
    gt, out = Path(gt), Path(out)
    stage(READING_STAGES[0])
    instances = read_instances(gt, skip_invalid=skip_invalid, require_masks=False)
    coco_gt = instances.coco()
    skipped_entries = Counter() if skip_invalid else None
    stage(READING_STAGES[1])
    results = load_results(predictions, coco_gt, gt_name=gt.name, skipped=skipped_entries)
    unmasked = sum("segmentation" not in a for a in instances.dataset["annotations"])
    if unmasked and has_masks(results):
        raise SegcoreError(f"{gt} has {unmasked} annotations with a box but no segmentation, so masks cannot be "
                           f"scored against it; pass box-only results, or a ground truth with masks.")
    skipped = {"ground_truth": dict(instances.skipped), "predictions": dict(skipped_entries)} if skip_invalid else None
    root, split = layout.split_of(gt)
    dataset = root.resolve().name if root is not None else gt.stem
    class_names = [coco_gt.cats[i]["name"] for i in sorted(coco_gt.getCatIds())]
    name = name or out.name
    if (out / runs.RUN_FILE).is_file() and runs.read_run(out).get("kind") != "external":
        raise SegcoreError(f"{out} holds a trained run; import the results into another folder with --out.")
    folder = write_eval_folder(out / runs.EVALS / f"{dataset}-{split}", coco_gt=coco_gt, results=results,
                               class_names=class_names, name=name, area_ranges=area_ranges,
                               source={"gt": str(gt.resolve()), "predictions": str(Path(predictions).resolve())},
                               skipped=skipped, on_stage=on_stage)
    # the manifest last: a run directory that says "finished" has its eval folder
    runs.write_run(out, {
        "name": name, "kind": "external", "model": None, "class_names": class_names,
        "category_ids": sorted(coco_gt.getCatIds()),
        "dataset": {"path": str(gt.resolve()), "name": dataset, "split": split},
        "predictions": str(Path(predictions).resolve()), "created": runs.now(), "versions": runs.library_versions(),
        "git_commit": runs.git_commit(), "status": "finished",
    })
    return folder
