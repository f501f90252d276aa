"""What in a run directory is damaged, and whether a run said to be training still is.

Damage: files that are not JSON, cut short, of the wrong shape, or missing from an eval folder, each with
one sentence naming the file and what is wrong.

Files are written atomically (segcore.atomic), but can still be damaged by hand, by a full disk or by a copy
cut short. The dashboard checks every run it lists, so that a page leaves out only what cannot be read and
says why, while every other run works.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segcore import liveness, runs
from segcore.errors import SegcoreError

#: The files of an eval folder (see segcore.scoring), each needed by some page.
EVAL_FILES = ("metrics.json", "per_image.csv", "per_instance.csv", "predictions.json", "curves.json")
#: Columns the pages read from each table; the numeric ones must hold numbers.
TABLE_COLUMNS = {runs.HISTORY: ("iteration", "loss"), runs.VALIDATION: ("iteration",),
                 "per_image.csv": ("image_id", "file_name"),
                 "per_instance.csv": ("image_id", "gt_id", "pred_id", "error_type")}
NUMERIC_COLUMNS = ("iteration", "loss", "image_id", "gt_id", "pred_id")
#: Keys the Compare page reads from a comparison file.
COMPARISON_KEYS = ("a", "b", "metrics", "most_different", "resamples", "seed")


def run_files(run_dir: str | Path) -> list[Path]:
    """Every file :func:`check_run` looks at, present or not: with :func:`stamp`, a cache key for its answer."""
    run_dir = Path(run_dir)
    files = [run_dir / name for name in (runs.RUN_FILE, runs.CHECKPOINT, runs.LAST, runs.HISTORY, runs.VALIDATION)]
    evals = run_dir / "evals"
    if evals.is_dir():
        files += [p / name for p in sorted(evals.iterdir()) if p.is_dir() and not p.name.startswith(".")
                  for name in EVAL_FILES]
    return files + list(runs.comparison_files(run_dir).values())


def check_run(run_dir: str | Path) -> dict[str, str]:
    """What is damaged in a run directory: files that are not JSON, cut short, of the wrong shape, or missing
    from an eval folder. Cheap enough for every run the dashboard lists (predictions.json is only checked
    for being whole, not parsed).

    Returns:
        the damaged files, relative to ``run_dir`` ("run.json", "evals/shapes-val/per_image.csv", …) -> one
        sentence naming the file and what is wrong with it; empty when the run is whole.
    """
    run_dir = Path(run_dir)
    damage: dict[str, str] = {}

    def check(relative: str, test) -> Any:
        try:
            return test(run_dir / relative)
        except SegcoreError as error:
            damage[relative] = str(error)

    check(runs.RUN_FILE, lambda path: runs.read_run(path.parent))
    for name in (runs.CHECKPOINT, runs.LAST):
        if (run_dir / name).exists():
            check(name, _check_checkpoint)
    for name in (runs.HISTORY, runs.VALIDATION):
        if (run_dir / name).exists():
            check(name, lambda path: _check_table(path, "train the run again (or resume it) to rewrite it."))
    evals = run_dir / "evals"
    for folder in sorted(evals.iterdir()) if evals.is_dir() else []:
        if not folder.is_dir() or folder.name.startswith("."):  # a half-written evaluation, never listed
            continue
        relative = f"evals/{folder.name}"
        missing = [name for name in EVAL_FILES if not (folder / name).is_file()]
        for name in missing:
            damage[f"{relative}/{name}"] = (f"{folder} has no {name} (the evaluation is incomplete); evaluate the "
                                            f"run again.")
        metrics = check(f"{relative}/metrics.json", _check_metrics) if "metrics.json" not in missing else None
        for name in [n for n in ("per_image.csv", "per_instance.csv") if n not in missing]:
            table = check(f"{relative}/{name}", lambda path: _check_table(path, "evaluate the run again.", whole=True))
            counted = None if metrics is None else metrics["n_images"]
            if name == "per_image.csv" and table is not None and counted is not None and len(table) != counted:
                damage[f"{relative}/{name}"] = (f"{folder / name} has {len(table)} rows but metrics.json counts "
                                                f"{counted} images; evaluate the run again.")
        if "predictions.json" not in missing:
            check(f"{relative}/predictions.json", _check_predictions)
        if "curves.json" not in missing:
            check(f"{relative}/curves.json", lambda path: runs.read_curves(path.parent))
    for path in runs.comparison_files(run_dir).values():
        check(f"comparisons/{path.name}", _check_comparison)
    return damage


def _check_checkpoint(path: Path) -> None:
    import zipfile

    # torch.save writes a zip archive, whose directory is at the end: a cut-short file has none
    if path.stat().st_size == 0:
        raise SegcoreError(f"{path} is empty (0 bytes); train the run again, or restore the file.")
    try:
        with zipfile.ZipFile(path):
            pass
    except (zipfile.BadZipFile, OSError):
        raise SegcoreError(f"{path} is cut short or is not a PyTorch checkpoint (it is not a whole zip archive); "
                           "train the run again, or restore the file.") from None


def _check_table(path: Path, remedy: str, *, whole: bool = False):
    table = runs.read_table(path)
    if len(table.columns) == 0:
        if whole and path.stat().st_size <= 1:  # an eval folder's table of nothing: written as an empty line
            return table
        raise SegcoreError(f"{path} is empty; {remedy}")
    missing = [c for c in TABLE_COLUMNS[path.name] if c not in table]
    if missing:
        raise SegcoreError(f"{path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)} (it is not the "
                           f"table segcore writes); {remedy}")
    import pandas as pd

    text = [c for c in TABLE_COLUMNS[path.name] if c in NUMERIC_COLUMNS and not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        raise SegcoreError(f"{path} holds text where {text[0]} should be a number; {remedy}")
    if whole:  # written at once, ending with a line end: a file without one was cut short
        with path.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                raise SegcoreError(f"{path} is cut short (its last line is unfinished); {remedy}")
    return table


def _check_metrics(path: Path) -> dict[str, Any]:
    metrics = runs.read_metrics(path.parent)
    if not isinstance(metrics.get("n_images"), int) or not isinstance(metrics.get("source"), dict):
        raise SegcoreError(f"{path} lacks n_images or source (it is not the metrics.json segcore writes); evaluate "
                           "the run again.")
    sections = [k for k in ("segm", "bbox", "semantic", "boundary", "speed", "breakdowns") if
                not isinstance(metrics.get(k, {}), dict)]
    if sections:
        raise SegcoreError(f"{path} holds a {sections[0]} that is not a JSON object; evaluate the run again.")
    return metrics


def _check_predictions(path: Path) -> None:
    # parsing tens of megabytes for every listed run would slow every page; a whole array starts with "["
    # and ends with "]", and a page that reads the file says what is wrong with its inside
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(64).lstrip()
        file.seek(max(0, size - 64))
        tail = file.read().rstrip()
    if not (head.startswith(b"[") and tail.endswith(b"]")):
        raise SegcoreError(f"{path} is cut short or is not a JSON array of predictions; evaluate the run again.")


def _check_comparison(path: Path) -> None:
    comparison = runs.read_comparison(path)
    missing = [k for k in COMPARISON_KEYS if k not in comparison]
    if missing or not all(isinstance(comparison[k], dict) for k in ("a", "b", "metrics", "most_different")):
        raise SegcoreError(f"{path} lacks {', '.join(missing) or 'the objects a, b, metrics or most_different'} (it "
                           "is not a file segcore compare writes); run segcore compare again.")


def status(manifest: dict[str, Any]) -> str:
    """A run's status (one of find_runs' manifests) as a page shows it: run.json's own ("running",
    "finished", "failed", "interrupted"), or "killed" for a run that says "running" while the process
    training it is gone (``kill -9`` leaves run.json as it was)."""
    return liveness.training_status(manifest)


def damage_of(manifest: dict[str, Any]) -> dict[str, str]:
    """The damaged files of one of find_runs' manifests: its "damage" (from :func:`check_run`, added by the
    dashboard) and, for a run.json that could not be read, its "error"."""
    damage = dict(manifest.get("damage") or {})
    if manifest.get("error"):
        damage.setdefault(runs.RUN_FILE, manifest["error"])
    return damage


def damage_in(manifest: dict[str, Any], part: str) -> list[str]:
    """The sentences about the damaged files a page showing ``part`` of a run needs: its run.json, and
    ``part`` itself ("history.csv") or the files under it ("evals/shapes-val")."""
    return [sentence for file, sentence in damage_of(manifest).items()
            if file in (runs.RUN_FILE, part) or file.startswith(f"{part}/")]


def has_model(manifest: dict[str, Any]) -> bool:
    """Whether a run (one of find_runs' manifests) has a checkpoint.pt, whole or not: one to load or to name."""
    return (Path(manifest["path"]) / runs.CHECKPOINT).is_file()


def usable_model(manifest: dict[str, Any]) -> bool:
    """Whether a run has a whole checkpoint.pt and a readable run.json: a model the pages can load."""
    return has_model(manifest) and not damage_in(manifest, runs.CHECKPOINT)


def usable_evals(manifest: dict[str, Any]) -> dict[str, Path]:
    """The eval folders of a run (one of find_runs' manifests) that are whole, by name; none when its
    run.json is damaged."""
    return {name: folder for name, folder in runs.eval_folders(manifest["path"]).items()
            if not damage_in(manifest, f"evals/{name}")}


def left_out(manifests: list[dict[str, Any]], part: str) -> list[str]:
    """One sentence per run of ``manifests`` that a page showing ``part`` leaves out, and why."""
    notes = []
    names = runs.display_names(manifests)
    for manifest in manifests:
        sentences = damage_in(manifest, part)
        if sentences:
            more = f" ({len(sentences) - 1} more damaged files are listed on the Overview.)" * (len(sentences) > 1)
            notes.append(f"{names[manifest['path']]} is left out: {sentences[0]}{more}")
    return notes
