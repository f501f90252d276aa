"""``segcore compare RUN_A RUN_B``: is the difference between two runs real?

For each headline metric: the difference B − A with a 95% paired bootstrap confidence interval over the
split's images (both runs resampled with the same images), and the images on which the two differ most.
Mask and box AP are re-accumulated from segcore's COCO matches (equal to COCOeval's) for every resample; the per-image
metrics (semantic mIoU, pixel accuracy, F1) are averaged. Scoring needs no torch; a run that has not
been evaluated on the split yet is evaluated first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcore import runs
from segcore.coco.results import has_masks
from segcore.errors import SegcoreError
from segcore.evaluation.scoring import ground_truth_of
from segcore.metrics.coco import CocoEvaluation
from segcore.metrics.stats import bootstrap_ap, most_different, paired_bootstrap

#: Per-image columns of per_image.csv compared by their mean.
PER_IMAGE_METRICS = ("semantic_miou", "pixel_accuracy", "f1")


def _eval_folder(run_dir: Path, data: Path, split: str, progress: bool) -> Path:
    name = runs.eval_name(data, split)
    folder = runs.eval_folders(run_dir).get(name)
    if folder is not None:
        return folder
    manifest = runs.read_run(run_dir)
    if manifest.get("kind") == "external":
        raise SegcoreError(f"{run_dir} is an imported results file without predictions on {name}; "
                           f"import its results for that split with segcore eval --predictions.")
    from segcore.evaluation.evaluate import evaluate_run  # needs torch; only when a run must still be evaluated

    return evaluate_run(run_dir, data, split, progress=progress)


def _per_image(folder: Path) -> dict[str, dict[int, float]]:
    """metric -> image id -> value, for the PER_IMAGE_METRICS per_image.csv has; empty cells left out."""
    table = runs.read_per_image(folder)  # of the shape segcore writes, or one sentence naming the file and column
    values: dict[str, dict[int, float]] = {metric: {} for metric in PER_IMAGE_METRICS}
    for metric in PER_IMAGE_METRICS:
        if metric in table:
            kept = table[["image_id", metric]].dropna()
            values[metric] = dict(zip(kept["image_id"].tolist(), kept[metric].astype(float).tolist()))
    return values


def compare_runs(run_a: str | Path, run_b: str | Path, data: str | Path, split: str, *, resamples: int = 1000,
                 seed: int = 0, out: str | Path | None = None, progress: bool = True) -> Path:
    """Compare two runs on ``split`` of ``data``; returns the JSON file written.

    The file goes to ``out``, by default ``RUN_B/comparisons/<dataset>-<split>-vs-<name of A>.json`` (the name
    made a plain file name: :func:`segcore.runs.comparison_stem`).
    Differences are B − A: positive means B scores higher.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise SegcoreError(f"the number of bootstrap resamples must be a whole number of at least 1, got "
                           f"{resamples!r}; 1000 or more give stable 95% intervals.")
    run_a, run_b, data = Path(run_a), Path(run_b), Path(data)
    folders = [_eval_folder(run, data, split, progress) for run in (run_a, run_b)]
    names = [runs.read_run(run)["name"] for run in (run_a, run_b)]
    # read as the evaluations read it: with what --skip-invalid left out of either left out here too
    sources = [runs.dataset_source(folder) for folder in folders]
    coco_gt = ground_truth_of(next((s for s in sources if s.skip_invalid), sources[0]))
    predictions = [runs.read_eval_predictions(folder, coco_gt) for folder in folders]

    metrics: dict[str, dict] = {}
    kinds = ["bbox"] + (["segm"] if all(has_masks(p) or not p for p in predictions) else [])
    for kind in kinds:
        evaluators = [CocoEvaluation(coco_gt, p, kind) for p in predictions]
        label = "mask_AP" if kind == "segm" else "box_AP"
        metrics[label] = bootstrap_ap(*evaluators, resamples=resamples, seed=seed)
    per_image = [_per_image(folder) for folder in folders]
    differing: dict[str, list[dict]] = {}
    for metric in PER_IMAGE_METRICS:
        a, b = per_image[0][metric], per_image[1][metric]
        shared = sorted(set(a) & set(b))
        if not shared:
            continue
        metrics[metric] = paired_bootstrap(np.array([a[i] for i in shared]), np.array([b[i] for i in shared]),
                                           resamples=resamples, seed=seed)
        differing[metric] = most_different(a, b, k=10)
    for rows in differing.values():
        for row in rows:
            row["file_name"] = coco_gt.imgs[row["image_id"]]["file_name"]

    comparison = {
        "a": {"name": names[0], "run": str(run_a), "eval": str(folders[0])},
        "b": {"name": names[1], "run": str(run_b), "eval": str(folders[1])},
        "data": str(data.resolve()), "split": split, "difference": "b - a", "resamples": resamples, "seed": seed,
        "metrics": metrics, "most_different": differing, "created": runs.now(),
    }
    # A's name, from its run.json, becomes a file name: comparison_stem keeps it inside comparisons/
    stem = runs.comparison_stem(runs.eval_name(data, split), names[0])
    out = Path(out) if out else run_b / runs.COMPARISONS / f"{stem}.json"
    runs.write_json(out, comparison)
    return out


def compare_evaluated(run_a: str | Path, run_b: str | Path, evaluation: str, **options) -> Path:
    """:func:`compare_runs` on an evaluation both runs already have ("<dataset>-<split>"), on the dataset B's
    eval folder was scored against; ``options`` as compare_runs takes them. Returns the file written."""
    folder = runs.eval_folders(run_b).get(evaluation)
    if folder is None:
        raise SegcoreError(f"{run_b} has no evaluation {evaluation}; evaluate it with segcore eval first.")
    source = runs.dataset_source(folder)
    if source.root is None:
        raise SegcoreError(f"{source.annotations} is not in a dataset folder's layout "
                           "(DIR/annotations/instances_<split>.json); compare with segcore compare.")
    return compare_runs(run_a, run_b, source.root, source.split, **options)
