"""Eval folders (a contract, see DESIGN.md): every file name defined here once, and each file read here.

    RUN_DIR/evals/<dataset>-<split>/   metrics.json  predictions.json  per_image.csv  per_instance.csv  curves.json

Their numbers come from :mod:`segcore.evaluation.scoring`; :func:`write_eval_files` writes the five files
whole into a staging folder that then replaces the old one, so a half-written eval folder is never listed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segcore import atomic
from segcore.coco.results import ResultsError, load_results
from segcore.coco.results_table import write_results_json
from segcore.data import layout
from segcore.data.layout import check_split
from segcore.errors import SegcoreError
from segcore.runs import schemas
from segcore.runs.files import read_json, read_table

#: The folder of a run directory that holds its eval folders.
EVALS = "evals"
METRICS = "metrics.json"
PREDICTIONS = "predictions.json"
PER_IMAGE = "per_image.csv"
PER_INSTANCE = "per_instance.csv"
CURVES = "curves.json"
#: Every file of an eval folder, in the order the dashboard needs them.
EVAL_FILES = (METRICS, PER_IMAGE, PER_INSTANCE, PREDICTIONS, CURVES)


def eval_name(data: str | Path, split: str) -> str:
    """The eval folder's name for ``split`` of the dataset folder ``data``: "<dataset>-<split>"."""
    return f"{Path(data).resolve().name}-{check_split(split)}"


def eval_staging(out: str | Path) -> Path:
    """A new staging folder for the eval folder ``out``, for :func:`write_predictions` and then
    :func:`write_eval_files` (``staging=``); whoever made it removes it if they do not get that far."""
    return atomic.staging_folder(out)


def write_predictions(staging: str | Path, predictions: Sequence[dict]) -> None:
    """predictions.json into a staging folder of :func:`eval_staging`: COCO results entries, a list or a
    :class:`segcore.coco.results_table.ResultsTable`."""
    with (Path(staging) / PREDICTIONS).open("w") as file:
        write_results_json(file, predictions)


def write_eval_files(out: str | Path, *, metrics: dict, predictions: Sequence[dict] | None, per_image: list[dict],
                     per_instance: list[dict], curves: dict, staging: str | Path | None = None) -> None:
    """Write the eval folder ``out`` whole: its five files go into a staging folder that then replaces ``out``,
    so that a reader sees the old folder or the new one, never a mix.

    Args:
        metrics: metrics.json's content (NaN and infinity are written as null).
        predictions: COCO results entries, a list or a :class:`segcore.coco.results_table.ResultsTable`; None
            where :func:`write_predictions` wrote them into ``staging`` already.
        per_image, per_instance: the rows of the two tables; their columns are the union of the rows' keys.
        curves: curves.json's content.
        staging: a folder of :func:`eval_staging` to finish (removed if this fails), else a new one.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # named after this process, so that the next evaluation removes what a kill -9 left of it
    temporary = Path(staging) if staging is not None else eval_staging(out)
    try:
        if predictions is not None:
            write_predictions(temporary, predictions)
        assert (temporary / PREDICTIONS).is_file(), f"no {PREDICTIONS} in {temporary}"
        (temporary / METRICS).write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
        _write_csv(temporary / PER_IMAGE, per_image)
        _write_csv(temporary / PER_INSTANCE, per_instance)
        (temporary / CURVES).write_text(json.dumps(curves))
        os.chmod(temporary, 0o755)
        atomic.replace_folder(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


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
    # the union of the rows' keys in the order they first appear, from the few distinct key orders
    columns = tuple(dict.fromkeys(key for keys in dict.fromkeys(tuple(row) for row in rows) for key in keys))
    with path.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(columns)
        # csv.writer writes None as an empty cell, as DictWriter does a missing one; a row with every column
        # in order (nearly all of them) is written as it is
        writer.writerows(row.values() if tuple(row) == columns else [row.get(column) for column in columns]
                         for row in rows)


def eval_part(evaluation: str | None = None) -> str:
    """Where a run's eval folders lie within it, as :mod:`segcore.runs.health` names its files: "evals", or
    "evals/<evaluation>" for one of them."""
    return EVALS if evaluation is None else f"{EVALS}/{evaluation}"


def eval_folders(run_dir: str | Path) -> dict[str, Path]:
    """The eval folders of a run, by name ("<dataset>-<split>"); half-written ones are never listed."""
    evals = Path(run_dir) / EVALS
    if not evals.is_dir():
        return {}
    return {p.name: p for p in sorted(evals.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / METRICS).is_file()}


def read_metrics(eval_folder: str | Path) -> schemas.Metrics:
    """The metrics.json of an eval folder (:class:`segcore.runs.schemas.Metrics`)."""
    path = Path(eval_folder) / METRICS
    metrics = read_json(path, missing=f"is not an eval folder: it has no {METRICS}; run segcore eval.",
                        damaged=schemas.METRICS.remedy)
    return schemas.METRICS.check(path, metrics)


def read_per_image(eval_folder: str | Path):
    """per_image.csv of an eval folder: one row per image (:data:`segcore.runs.schemas.PER_IMAGE`)."""
    return read_table(Path(eval_folder) / PER_IMAGE, schemas.PER_IMAGE)


def read_per_instance(eval_folder: str | Path):
    """per_instance.csv of an eval folder: one row per ground truth and per prediction
    (:data:`segcore.runs.schemas.PER_INSTANCE`)."""
    return read_table(Path(eval_folder) / PER_INSTANCE, schemas.PER_INSTANCE)


def read_curves(eval_folder: str | Path) -> schemas.Curves:
    """curves.json of an eval folder: precision-recall curves per IoU type and the score calibration
    (:class:`segcore.runs.schemas.Curves`)."""
    path = Path(eval_folder) / CURVES
    curves = read_json(path, missing=f"is not an eval folder: it has no {CURVES}; run segcore eval.",
                       damaged=schemas.CURVES.remedy)
    return schemas.CURVES.check(path, curves)


def read_predictions(eval_folder: str | Path) -> list[dict[str, Any]]:
    """predictions.json of an eval folder: COCO results entries."""
    return read_json(Path(eval_folder) / PREDICTIONS, missing=f"is not an eval folder: it has no "
                     f"{PREDICTIONS}; run segcore eval.", damaged="evaluate the run again.", expect=list)


@dataclass
class DatasetSource:
    """Where an eval folder's ground truth and images are."""

    annotations: Path
    images: Path | None  # the split's image folder, None when the ground truth is not in COCO layout
    root: Path | None    # the dataset folder, None likewise
    split: str
    #: the evaluation skipped invalid ground truth (--skip-invalid): read it the same way to match its ids
    skip_invalid: bool = False
    #: the evaluation also skipped images whose files are missing (a model's evaluation reads them)
    skip_missing_images: bool = False


def dataset_source(eval_folder: str | Path) -> DatasetSource:
    """The ground truth and image folder an eval folder was scored against, from its metrics.json."""
    metrics = read_metrics(eval_folder)
    source = metrics.get("source") or {}
    skipped = metrics.get("skipped")
    skip_invalid = isinstance(skipped, dict) and bool(skipped.get("ground_truth"))
    if source.get("data") and source.get("split"):
        return DatasetSource(layout.annotation_path(source["data"], source["split"]),
                             layout.image_folder(source["data"], source["split"]), Path(source["data"]),
                             source["split"], skip_invalid, skip_invalid)
    if source.get("gt"):
        root, split = layout.split_of(source["gt"])
        return DatasetSource(Path(source["gt"]), layout.image_folder(root, split) if root is not None else None, root,
                             split, skip_invalid)
    raise SegcoreError(f"{Path(eval_folder) / METRICS} does not say which data it scored; evaluate the run again.")


def read_eval_predictions(eval_folder: str | Path, coco_gt) -> list[dict]:
    """An eval folder's predictions.json, checked against the ground truth it was scored on like any results
    file: the file may have been damaged or edited since, and pycocotools' decoder trusts its input (masks
    whose runs stop short decode to stale memory, ones that overrun write past the buffer).

    Returns:
        the entries in the file's order, which per_instance.csv's ``pred_id`` indexes.
    """
    path = Path(eval_folder) / PREDICTIONS
    try:
        return load_results(path, coco_gt, source=str(path))
    except ResultsError as error:
        # the problem as the checker words it ("<source>: entry 3 has ..."), with a remedy for segcore's own file
        problem = str(error).split("; ")[0].removeprefix(f"{path}: ")
        raise ResultsError(f"{path} is damaged ({problem}); evaluate the run again.") from None
