"""Run directories: everything segcore writes for a run, and the dashboard's only way in.

The layout is a contract (see DESIGN.md); each part is defined in one module::

    RUN_DIR/run.json                    the manifest                          manifest.py
    RUN_DIR/checkpoint.pt, last.pt      best and latest weights               checkpoints.py
    RUN_DIR/history.csv, validation.csv the training log                      manifest.py (names), files.py
    RUN_DIR/evals/<dataset>-<split>/    eval folders                          eval_folder.py
    RUN_DIR/comparisons/*.json          ``segcore compare`` files, run as B   comparisons.py

Each file's shape is declared in :mod:`segcore.runs.schemas`; :mod:`segcore.runs.health` says which files
of a run are damaged and why, so that a page leaves out only what cannot be read; :mod:`segcore.runs.discover`
finds runs. Names that end up in paths (a run's name in a comparison's file name, a split, a folder typed
into the dashboard) go through :func:`comparison_stem`, :func:`segcore.data.layout.check_split` and
:func:`confine`, so none leads outside its folder.

The names below are the package's API (``from segcore import runs; runs.read_run(...)``).
"""

from segcore.runs.comparisons import (
    COMPARISONS,
    compared_pairs,
    comparison_files,
    comparison_is_current,
    comparison_stem,
    read_comparison,
)
from segcore.runs.discover import DEFAULT_ROOTS, RUNS_VARIABLE, confine, display_names, find_runs, run_roots
from segcore.runs.eval_folder import (
    CURVES,
    EVAL_FILES,
    EVALS,
    METRICS,
    PER_IMAGE,
    PER_INSTANCE,
    PREDICTIONS,
    DatasetSource,
    dataset_source,
    eval_folders,
    eval_name,
    eval_part,
    eval_staging,
    read_curves,
    read_eval_predictions,
    read_metrics,
    read_per_image,
    read_per_instance,
    read_predictions,
    write_eval_files,
    write_predictions,
)
from segcore.runs.files import CsvLog, read_json, read_table, stamp, write_json
from segcore.runs.manifest import (
    CHECKPOINT,
    HISTORY,
    LAST,
    RUN_FILE,
    VALIDATION,
    git_commit,
    library_versions,
    now,
    read_history,
    read_run,
    read_validation,
    selected_iteration,
    write_run,
)

__all__ = [
    "CHECKPOINT", "COMPARISONS", "CURVES", "CsvLog", "DEFAULT_ROOTS", "DatasetSource", "EVALS", "EVAL_FILES",
    "HISTORY", "LAST", "METRICS", "PER_IMAGE", "PER_INSTANCE", "PREDICTIONS", "RUNS_VARIABLE", "RUN_FILE",
    "VALIDATION", "compared_pairs", "comparison_files", "comparison_is_current", "comparison_stem", "confine",
    "dataset_source", "display_names", "eval_folders", "eval_name", "eval_part", "eval_staging", "find_runs",
    "git_commit", "library_versions", "now", "read_comparison", "read_curves", "read_eval_predictions",
    "read_history", "read_json", "read_metrics", "read_per_image", "read_per_instance", "read_predictions",
    "read_run", "read_table", "read_validation", "run_roots", "selected_iteration", "stamp", "write_eval_files",
    "write_json", "write_predictions", "write_run",
]
