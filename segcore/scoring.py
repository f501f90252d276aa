"""Scoring predictions in COCO results format against COCO ground truth, into an eval folder.

Shared by ``segcore eval RUN_DIR`` (a model's predictions, with its semantic maps and speed) and
``segcore eval --predictions`` (another tool's results file). No torch here, so that scoring a results
file starts fast. The eval folder (a contract, see DESIGN.md)::

    metrics.json  predictions.json  per_image.csv  per_instance.csv  curves.json

is written to a temporary folder beside its place and renamed there, so a reader or a kill never meets
half of one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segcore import runs
from segcore.errors import SegcoreError
from segcore.label_maps import paint_instances, painting_order_by_area
from segcore.metrics.boundary import boundary_metrics
from segcore.metrics.coco import breakdowns, coco_metrics
from segcore.metrics.matching import calibration, match_instances, occlusion_from_boxes, per_image_metrics
from segcore.metrics.semantic import semantic_scores
from segcore.results import has_masks

EVAL_FILES = ("metrics.json", "predictions.json", "per_image.csv", "per_instance.csv", "curves.json")


def annotation_occlusion(coco_gt) -> tuple[dict[int, float], str]:
    """Each GT annotation's occlusion and where it comes from: the dataset's ``occlusion`` field, or
    (for datasets without one) each object's largest box overlap with the others."""
    annotations = coco_gt.dataset.get("annotations", [])
    if annotations and all(isinstance(a.get("occlusion"), (int, float)) for a in annotations):
        return {a["id"]: float(a["occlusion"]) for a in annotations}, "annotation occlusion field"
    return occlusion_from_boxes(coco_gt), "largest box overlap with the other objects (no occlusion field)"


def semantic_from_results(coco_gt, results: list[dict], num_classes: int, labels: dict[int, int]):
    """Confusion matrix and per-image semantic scores of results whose instances are painted in score
    order, against the ground truth painted smaller-in-front (as the data layer does)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    per_image: dict[int, dict] = {}
    by_image: dict[int, list[dict]] = {}
    for result in results:
        by_image.setdefault(result["image_id"], []).append(result)
    for image_id in coco_gt.getImgIds():
        info = coco_gt.imgs[image_id]
        annotations = coco_gt.imgToAnns.get(image_id, [])
        shape = (info["height"], info["width"])
        gt_masks = np.stack([coco_gt.annToMask(a) for a in annotations]) if annotations else np.zeros((0, *shape), bool)
        gt_labels = np.array([labels[a["category_id"]] for a in annotations], dtype=np.int64)
        truth = paint_instances(gt_masks, gt_labels, painting_order_by_area(gt_masks))
        predicted_entries = sorted(by_image.get(image_id, []), key=lambda r: r["score"])  # highest painted last
        if predicted_entries:
            masks = mask_utils.decode([r["segmentation"] for r in predicted_entries]).transpose(2, 0, 1)
            predicted = paint_instances(masks, np.array([labels[r["category_id"]] for r in predicted_entries]))
        else:
            predicted = np.zeros(shape, dtype=np.int64)
        pairs = truth.ravel() * num_classes + predicted.ravel()
        image_matrix = np.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, num_classes)
        matrix += image_matrix
        scores = semantic_scores(image_matrix)
        per_image[image_id] = {"semantic_miou": scores["mIoU"], "pixel_accuracy": scores["pixel_accuracy"]}
    return matrix, per_image


def _json_safe(value: Any) -> Any:
    """NaN and infinity as null: JSON has no such numbers, and a metric that cannot be computed is absent."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _replace_folder(temporary: Path, out: Path) -> None:
    """Put ``temporary`` at ``out``; an old ``out`` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    temporary.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_eval_folder(out: str | Path, *, coco_gt, results: list[dict], class_names: list[str], name: str,
                      semantic_matrix: np.ndarray | None = None, per_image_semantic: dict[int, dict] | None = None,
                      speed: dict | None = None, area_ranges: dict[str, tuple[float, float]] | None = None,
                      source: dict | None = None) -> Path:
    """Score ``results`` against ``coco_gt`` and write the eval folder ``out``.

    Args:
        coco_gt: pycocotools COCO of the ground truth.
        results: COCO results entries (masks as compressed RLE with counts as str, or boxes only).
        class_names: names of the categories, in sorted category-id order.
        name: the run's name.
        semantic_matrix: (K+1, K+1) confusion matrix from the model's own semantic maps; computed from
            the painted results when absent and the results have masks.
        per_image_semantic: image_id -> {"semantic_miou", "pixel_accuracy"}, with ``semantic_matrix``.
        speed: the speed section, for a model that was timed.
        area_ranges: extra named area ranges for AP.
        source: what was evaluated (run, checkpoint, data, split, or the results file).

    Returns:
        ``out``.
    """
    out = Path(out)
    masks = has_masks(results)
    iou_type = "segm" if masks else "bbox"
    category_ids = sorted(coco_gt.getCatIds())
    labels = {category_id: label for label, category_id in enumerate(category_ids, start=1)}
    occlusion, occlusion_source = annotation_occlusion(coco_gt)

    metrics: dict[str, Any] = {"name": name, "n_images": len(coco_gt.getImgIds())}
    curves: dict[str, Any] = {}
    for kind in (("segm", "bbox") if masks else ("bbox",)):
        scores = coco_metrics(coco_gt, results, kind, class_names=class_names, area_ranges=area_ranges)
        curves[kind] = scores.pop("curves", None)
        metrics[kind] = scores
    if masks:
        metrics["boundary"] = boundary_metrics(coco_gt, results, class_names=class_names)
        if semantic_matrix is None:
            semantic_matrix, per_image_semantic = semantic_from_results(coco_gt, results, len(labels) + 1, labels)
    if semantic_matrix is not None:
        metrics["semantic"] = semantic_scores(semantic_matrix, ["background", *class_names])
    metrics["breakdowns"] = breakdowns(coco_gt, results, iou_type, occlusion=occlusion, class_names=class_names)
    metrics["occlusion_source"] = occlusion_source

    rows = match_instances(coco_gt, results, iou_type=iou_type, occlusion=occlusion, with_boundary=masks)
    matched = [r["boundary_iou"] for r in rows if r.get("boundary_iou") is not None]
    if masks:
        metrics["boundary"]["mean_iou"] = float(np.mean(matched)) if matched else None
    metrics["calibration"] = calibration(rows)
    curves["calibration"] = metrics["calibration"]
    per_image = per_image_metrics(rows, coco_gt)
    for row in per_image:
        row.update((per_image_semantic or {}).get(row["image_id"], {}))
    if speed is not None:
        metrics["speed"] = speed
    metrics["source"] = source or {}
    metrics["created"] = runs.now()

    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        (temporary / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
        (temporary / "predictions.json").write_text(json.dumps(results))
        _write_csv(temporary / "per_image.csv", per_image)
        _write_csv(temporary / "per_instance.csv", rows)
        (temporary / "curves.json").write_text(json.dumps(curves))
        os.chmod(temporary, 0o755)
        _replace_folder(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return out


def load_ground_truth(path: str | Path):
    """A COCO instances file as a pycocotools COCO object, or one clear error naming the file."""
    from pycocotools.coco import COCO

    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise SegcoreError(f"ground-truth file {path} does not exist; pass the dataset's instances_<split>.json.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SegcoreError(f"ground-truth file {path} is not valid JSON ({error}); pass a COCO instances file.") from None
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(content, dict) or key not in content]
    if missing:
        raise SegcoreError(f"ground-truth file {path} has no {', '.join(missing)}; pass a COCO instances file.")
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def evaluate_results(gt: str | Path, predictions: str | Path, out: str | Path, *, name: str | None = None,
                     area_ranges: dict[str, tuple[float, float]] | None = None) -> Path:
    """Import another tool's COCO results file as an external run and score it.

    ``out`` becomes a run directory with ``run.json`` (kind "external", no checkpoints) and the eval
    folder ``out/evals/<dataset>-<split>``, named from a ground-truth path in COCO layout
    (``DATASET/annotations/instances_<split>.json``), else from the file's name.

    Returns:
        the eval folder.
    """
    from segcore.results import load_results

    gt, out = Path(gt), Path(out)
    coco_gt = load_ground_truth(gt)
    results = load_results(predictions, coco_gt, gt_name=gt.name)
    split = gt.stem.removeprefix("instances_")
    dataset = gt.resolve().parent.parent.name if gt.parent.name == "annotations" else gt.stem
    class_names = [coco_gt.cats[i]["name"] for i in sorted(coco_gt.getCatIds())]
    name = name or out.name
    runs.write_json(out / runs.RUN_FILE, {
        "name": name, "kind": "external", "model": None, "class_names": class_names,
        "category_ids": sorted(coco_gt.getCatIds()),
        "dataset": {"path": str(gt.resolve()), "name": dataset, "split": split},
        "predictions": str(Path(predictions).resolve()), "created": runs.now(), "versions": runs.library_versions(),
        "git_commit": runs.git_commit(), "status": "finished",
    })
    return write_eval_folder(out / "evals" / f"{dataset}-{split}", coco_gt=coco_gt, results=results,
                             class_names=class_names, name=name, area_ranges=area_ranges,
                             source={"gt": str(gt.resolve()), "predictions": str(Path(predictions).resolve())})
