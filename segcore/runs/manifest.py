"""run.json, the run's manifest, read and written here only; and the names of a run directory's own files.

    RUN_DIR/run.json         name, model and options, class names, dataset path and checksum, seed,
                             git commit, library versions, created time, wall time, status
    RUN_DIR/checkpoint.pt    best weights        RUN_DIR/last.pt    latest weights and optimizer state
    RUN_DIR/history.csv      epoch, iteration, lr, loss, loss_<term>…, images_per_s
    RUN_DIR/validation.csv   epoch, iteration, and the validation metrics that pick checkpoint.pt
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segcore.runs import schemas
from segcore.runs.files import read_json, read_table, write_json

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"
LAST = "last.pt"
HISTORY = "history.csv"
VALIDATION = "validation.csv"


def write_run(run_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Atomically (re)write the run.json of ``run_dir``: the one place a manifest is written."""
    write_json(Path(run_dir) / RUN_FILE, manifest)


def read_run(run_dir: str | Path) -> schemas.RunManifest:
    """The manifest of a run directory, of the shape :class:`segcore.runs.schemas.RunManifest` declares (at least
    its name and kind, as text)."""
    path = Path(run_dir) / RUN_FILE
    manifest = read_json(path, missing=f"is not a run directory: it has no {RUN_FILE}.", damaged=schemas.RUN.remedy)
    return schemas.RUN.check(path, manifest)


def git_commit() -> str | None:
    """The commit of the segcore source tree, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=True)
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on (torch's with its build, e.g. +cu130)."""
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "numpy", "pycocotools"):
        module = sys.modules.get(package)
        try:
            versions[package] = getattr(module, "__version__", None) or importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def now() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def read_history(run_dir: str | Path):
    """history.csv of a run: one row per logged iteration (epoch, iteration, lr, loss, loss_<term>…,
    images_per_s; :data:`segcore.runs.schemas.HISTORY`); empty when the run has none (an imported results file).
    A row still being written is left out."""
    return read_table(Path(run_dir) / HISTORY, schemas.HISTORY)


def read_validation(run_dir: str | Path):
    """validation.csv of a run: one row per validation (epoch, iteration, minutes since the run started,
    images validated, val_mask_AP, val_box_AP, val_mIoU, val_pixel_accuracy; :data:`segcore.runs.schemas.VALIDATION`);
    runs trained before segcore validated by mask AP have the semantic scores alone (val_mIoU,
    val_pixel_accuracy, val_mean_class_accuracy). Empty when the run has none."""
    return read_table(Path(run_dir) / VALIDATION, schemas.VALIDATION)


def selected_iteration(manifest: dict) -> int | None:
    """The iteration whose weights are the run's checkpoint.pt (the best validation), where the run says."""
    best = manifest.get("best")
    iteration = best.get("iteration") if isinstance(best, dict) else None
    return iteration if isinstance(iteration, int) and not isinstance(iteration, bool) else None
