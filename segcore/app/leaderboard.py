"""One scoreboard for every run, ours and imported: instance and semantic models side by side.

Each run evaluated on a dataset split gives one row from its eval folder's metrics.json (read through
:mod:`segcore.runs`). No torch here: the dashboard's leaderboard opens without loading a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segcore import runs
from segcore.errors import SegcoreError
from segcore.metrics.stats import bootstrap_mean
from segcore.runs import health as run_health

#: Leaderboard columns: name -> (metrics.json section, key), in display order.
METRIC_COLUMNS: dict[str, tuple[str, str]] = {
    "mask AP": ("segm", "AP"), "AP50": ("segm", "AP50"), "AP75": ("segm", "AP75"), "APs": ("segm", "APs"),
    "APm": ("segm", "APm"), "APl": ("segm", "APl"), "box AP": ("bbox", "AP"), "mIoU": ("semantic", "mIoU"),
    "pixel accuracy": ("semantic", "pixel_accuracy"), "boundary AP": ("boundary", "AP"),
    "latency p50 (ms)": ("speed", "total_ms_p50"), "params": ("speed", "params"), "FLOPs": ("speed", "flops"),
}
#: Columns where higher is better (the rest, speed and size, are better lower).
ACCURACY_COLUMNS = ("mask AP", "AP50", "AP75", "APs", "APm", "APl", "box AP", "mIoU", "pixel accuracy", "boundary AP")
#: Per-image columns of per_image.csv whose mean over images gets a bootstrap interval.
PER_IMAGE_COLUMNS = {"per-image mIoU": "semantic_miou", "per-image pixel accuracy": "pixel_accuracy",
                     "per-image F1 at IoU 0.5": "f1"}


def family(manifest: dict[str, Any]) -> str:
    """What kind of model a run is, for filtering: its model name, or "external" for imported results."""
    if manifest.get("kind") == "external":
        return "external"
    return str(manifest.get("model") or "unknown")


def evaluation_names(found: list[dict[str, Any]]) -> list[str]:
    """The "<dataset>-<split>" evaluations that at least one of ``found`` (find_runs' manifests) has whole."""
    names = {name for manifest in found for name in run_health.usable_evals(manifest)}
    return sorted(names)


def leaderboard(found: list[dict[str, Any]], evaluation: str):
    """One row per run evaluated as ``evaluation``, with METRIC_COLUMNS.

    Args:
        found: manifests from :func:`segcore.runs.find_runs` (each with its ``path``).
        evaluation: an eval folder name, "<dataset>-<split>".

    Returns:
        a pandas DataFrame with "run" (unique: see :func:`segcore.runs.display_names`), "family", the metric
        columns (NaN where a run has no such metric, such as boundary AP for box-only results), "eval" (the eval
        folder) and "path"; sorted by mask AP, then box AP, best first. A run whose eval folder is damaged (see
        :func:`segcore.runs.health.check_run`) or whose metrics.json cannot be read is left out.
    """
    import pandas as pd

    rows = []
    shown = runs.display_names(found)
    for manifest in found:
        folder = run_health.usable_evals(manifest).get(evaluation)
        if folder is None:
            continue
        try:
            metrics = runs.read_metrics(folder)
        except SegcoreError:
            continue
        row: dict[str, Any] = {"run": shown[manifest["path"]], "family": family(manifest)}
        for column, (section, key) in METRIC_COLUMNS.items():
            value = (metrics.get(section) or {}).get(key)
            row[column] = float(value) if isinstance(value, (int, float)) else np.nan
        row["eval"], row["path"] = str(folder), manifest["path"]
        rows.append(row)
    columns = ["run", "family", *METRIC_COLUMNS, "eval", "path"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["mask AP", "box AP"], ascending=False, na_position="last", kind="stable",
                             ignore_index=True)


def pareto_front(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(N,) bool: the points no other point beats, that is, none is at most as costly and at least as
    good, and strictly better in one. NaN points are never on the front.

    Args:
        cost: (N,) lower is better (latency, say).
        value: (N,) higher is better (AP, say).
    """
    cost, value = np.asarray(cost, dtype=np.float64), np.asarray(value, dtype=np.float64)
    valid = ~(np.isnan(cost) | np.isnan(value))
    no_worse = (cost[None, :] <= cost[:, None]) & (value[None, :] >= value[:, None])
    better = (cost[None, :] < cost[:, None]) | (value[None, :] > value[:, None])
    dominated = (no_worse & better & valid[None, :]).any(axis=1)
    return valid & ~dominated


def per_image_intervals(eval_folder: str | Path, *, resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """95% bootstrap intervals over images of the per-image means (PER_IMAGE_COLUMNS) of one eval folder.

    Returns:
        column name -> {"mean", "low", "high", "n_images"}, for the columns per_image.csv has.
    """
    table = runs.read_per_image(eval_folder)
    return {name: bootstrap_mean(table[column].to_numpy(dtype=np.float64), resamples=resamples, seed=seed)
            for name, column in PER_IMAGE_COLUMNS.items() if column in table}


def ap_intervals(eval_folder: str | Path, *, resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """95% bootstrap intervals over images of an eval folder's mask and box AP.

    AP is not a mean over images, so each resample re-accumulates COCO's matches
    (:func:`segcore.metrics.stats.ap_interval`); this takes seconds on a split with many detections, which
    is why the dashboard asks for it rather than computing it for every run.

    Returns:
        {"mask AP", "box AP": {"mean", "low", "high", "n_images"}} for the IoU types the predictions have.
    """
    from segcore.coco.results import has_masks
    from segcore.evaluation.scoring import ground_truth_of
    from segcore.metrics.coco import CocoEvaluation
    from segcore.metrics.stats import ap_interval

    coco_gt = ground_truth_of(runs.dataset_source(eval_folder))
    results = runs.read_eval_predictions(eval_folder, coco_gt)
    kinds = {"mask AP": "segm", "box AP": "bbox"} if has_masks(results) else {"box AP": "bbox"}
    return {name: ap_interval(CocoEvaluation(coco_gt, results, kind), resamples=resamples, seed=seed)
            for name, kind in kinds.items()}


def attention_table(sections: dict[str, dict]):
    """Each run's metrics.json "attention" section (run -> section) as a table for the Leaderboard."""
    import pandas as pd

    return pd.DataFrame([{"run": run, "matched detections": s.get("instances"), "mean focus": s.get("focus_mean"),
                          "median focus": s.get("focus_median"),
                          "rank correlation with mask IoU": s.get("focus_iou_spearman")}
                         for run, s in sections.items()])


#: The per-class scores the Leaderboard offers: name -> (metrics.json section, key).
PER_CLASS = {"mask AP": ("segm", "per_class"), "box AP": ("bbox", "per_class"),
             "semantic IoU": ("semantic", "per_class_iou")}
#: The breakdowns of metrics.json's "breakdowns" section, and "area" (COCO's small, medium, large AP).
BREAKDOWNS = ("occlusion", "objects_per_image", "area")


def per_class(metrics: dict[str, dict], kind: str) -> dict[str, dict[str, float | None]]:
    """run -> class -> score, for ``kind`` one of :data:`PER_CLASS`, from each run's metrics.json."""
    section, key = PER_CLASS[kind]
    return {run: (m.get(section) or {}).get(key) or {} for run, m in metrics.items()}


def ap_breakdown(metrics: dict[str, dict], group: str) -> dict[str, dict[str, float | None]]:
    """run -> bin -> AP, for ``group`` one of :data:`BREAKDOWNS`; by area it is the mask AP (box AP for a
    box-only run) of COCO's small, medium and large objects."""
    if group == "area":
        return {run: {b: (m.get("segm") or m.get("bbox") or {}).get(k) for b, k in
                      (("small", "APs"), ("medium", "APm"), ("large", "APl"))} for run, m in metrics.items()}
    return {run: (m.get("breakdowns") or {}).get(group) or {} for run, m in metrics.items()}


def mean_iou_breakdown(metrics: dict[str, dict], group: str) -> dict[str, dict[str, float | None]]:
    """run -> bin -> mean instance IoU (a missed object counts 0), for ``group`` one of :data:`BREAKDOWNS`."""
    return {run: ((m.get("breakdowns") or {}).get("mean_iou") or {}).get(group) or {} for run, m in metrics.items()}


def occlusion_sources(metrics: dict[str, dict]) -> str:
    """Where the runs' occlusion values come from, as one phrase."""
    return ", ".join(sorted(filter(None, {m.get("occlusion_source") for m in metrics.values()})))


def calibrations(metrics: dict[str, dict]) -> dict[str, dict | None]:
    """run -> its score calibration (metrics.json's "calibration")."""
    return {run: m.get("calibration") for run, m in metrics.items()}


def attention_sections(metrics: dict[str, dict]) -> dict[str, dict]:
    """run -> its attention focus summary, for the runs whose mask branch has spatial attention."""
    return {run: m["attention"] for run, m in metrics.items() if isinstance(m.get("attention"), dict)}


def curves_of(curves: dict[str, dict], iou_type: str) -> dict[str, dict | None]:
    """run -> its precision-recall curves of ``iou_type`` ("segm" or "bbox"), from each run's curves.json."""
    return {run: c.get(iou_type) for run, c in curves.items()}
