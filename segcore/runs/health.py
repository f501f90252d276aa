"""What in a run directory is damaged, and whether a run said to be training still is.

Damage: files that are not JSON, cut short, of the wrong shape (:mod:`segcore.runs.schemas`, checked by the
readers of :mod:`segcore.runs`), or missing from an eval folder, each with one sentence naming the file and
what is wrong.

Files are written atomically (segcore.atomic), but can still be damaged by hand, by a full disk or by a copy
cut short. The dashboard checks every run it lists, so that a page leaves out only what cannot be read and
says why, while every other run works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcore import liveness, runs
from segcore.errors import SegcoreError


def run_files(run_dir: str | Path) -> list[Path]:
    """Every file :func:`check_run` looks at, present or not: with :func:`stamp`, a cache key for its answer."""
    run_dir = Path(run_dir)
    files = [run_dir / name for name in (runs.RUN_FILE, runs.CHECKPOINT, runs.LAST, runs.HISTORY, runs.VALIDATION)]
    evals = run_dir / runs.EVALS
    if evals.is_dir():
        files += [p / name for p in sorted(evals.iterdir()) if p.is_dir() and not p.name.startswith(".")
                  for name in runs.EVAL_FILES]
    return files + list(runs.comparison_files(run_dir).values())


def check_run(run_dir: str | Path) -> dict[str, str]:
    """What is damaged in a run directory: files that are not JSON, cut short, of the wrong shape anywhere
    inside (segcore.runs.schemas), or missing from an eval folder; and an eval folder whose files disagree. Cheap
    enough for every run the dashboard lists (predictions.json is only checked for being whole, not parsed).

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
    for name, read in ((runs.HISTORY, runs.read_history), (runs.VALIDATION, runs.read_validation)):
        if (run_dir / name).exists():
            check(name, lambda path, read=read: read(path.parent))
    evals = run_dir / runs.EVALS
    for folder in sorted(evals.iterdir()) if evals.is_dir() else []:
        if not folder.is_dir() or folder.name.startswith("."):  # a half-written evaluation, never listed
            continue
        relative = f"{runs.EVALS}/{folder.name}"
        missing = [name for name in runs.EVAL_FILES if not (folder / name).is_file()]
        for name in missing:
            damage[f"{relative}/{name}"] = (f"{folder} has no {name} (the evaluation is incomplete); evaluate the "
                                            f"run again.")
        metrics = None
        if runs.METRICS not in missing:
            metrics = check(f"{relative}/{runs.METRICS}", lambda path: runs.read_metrics(path.parent))
        if runs.PER_IMAGE not in missing:
            table = check(f"{relative}/{runs.PER_IMAGE}", lambda path: runs.read_per_image(path.parent))
            if table is not None and metrics is not None and len(table) != metrics["n_images"]:
                damage[f"{relative}/{runs.PER_IMAGE}"] = (f"{folder / runs.PER_IMAGE} has {len(table)} rows but "
                                                       f"{runs.METRICS} counts {metrics['n_images']} images; "
                                                       "evaluate the run again.")
        if runs.PER_INSTANCE not in missing:
            table = check(f"{relative}/{runs.PER_INSTANCE}", lambda path: runs.read_per_instance(path.parent))
            # the Leaderboard draws an attention model's focus from per_instance.csv
            if table is not None and metrics is not None and "attention" in metrics and len(table) \
                    and "attention_focus" not in table:
                damage[f"{relative}/{runs.PER_INSTANCE}"] = (f"{folder / runs.PER_INSTANCE} lacks the column "
                                                          "attention_focus that metrics.json's attention section "
                                                          "comes from; evaluate the run again.")
        if runs.PREDICTIONS not in missing:
            check(f"{relative}/{runs.PREDICTIONS}", _check_predictions)
        if runs.CURVES not in missing:
            check(f"{relative}/{runs.CURVES}", lambda path: runs.read_curves(path.parent))
    for path in runs.comparison_files(run_dir).values():
        check(f"{runs.COMPARISONS}/{path.name}", runs.read_comparison)
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
            if not damage_in(manifest, runs.eval_part(name))}


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
