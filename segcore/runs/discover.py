"""Finding run directories: under runs/, data/zoo/ and the folders of $SEGCORE_RUNS, and only there.

A folder typed into the dashboard goes through :func:`confine`, so that a visitor reads only where the
dashboard's operator pointed it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segcore.data import layout
from segcore.data.layout import lies_within
from segcore.errors import SegcoreError
from segcore.runs.manifest import RUN_FILE, read_run

#: Where the dashboard looks for run directories, besides the folders named in $SEGCORE_RUNS.
DEFAULT_ROOTS = ("runs", "data/zoo")
RUNS_VARIABLE = "SEGCORE_RUNS"


def run_roots(*extra: str | Path) -> list[Path]:
    """The folders holding run directories: runs/, data/zoo/, those in ``$SEGCORE_RUNS`` (separated by
    ``os.pathsep``) and ``extra``, each once."""
    named = [*DEFAULT_ROOTS, *filter(None, os.environ.get(RUNS_VARIABLE, "").split(os.pathsep)), *extra]
    return list(dict.fromkeys(Path(p) for p in named))


def find_runs(*roots: str | Path) -> list[dict[str, Any]]:
    """The manifests of the run directories directly under ``roots``, each with its ``path`` added.

    A folder whose run.json cannot be read is listed with an ``error`` instead of hiding the others.
    """
    found = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for run_dir in sorted(p for p in root.iterdir() if (p / RUN_FILE).is_file()):
            try:
                found.append({**read_run(run_dir), "path": str(run_dir)})
            except SegcoreError as error:
                found.append({"name": run_dir.name, "path": str(run_dir), "error": str(error)})
    return found


def display_names(found: list[dict[str, Any]]) -> dict[str, str]:
    """path -> the name to show for each of find_runs' manifests: the run's name, with its folder added
    where two runs share a name (runs/maskrcnn and data/zoo/maskrcnn, say), so that no two rows merge."""
    names = {m["path"]: str(m.get("name") or Path(m["path"]).name) for m in found}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    return {path: (f"{name} ({Path(path).parent.as_posix()})" if counts[name] > 1 else name)
            for path, name in names.items()}


def confine(typed: str, allowed: list[str | Path], *, what: str, remedy: str) -> Path:
    """A folder typed into the dashboard, when it lies within one of ``allowed``: a visitor may point the
    dashboard only where its operator did (its working folder, --runs, $SEGCORE_RUNS).

    Args:
        typed: the text as typed.
        allowed: folders it may lie within.
        what: what the text is, for the message ("run folder", "dataset folder").
        remedy: what to do instead, the end of the message.
    """
    layout.check_path_length(typed, what)
    if "\0" in typed or not any(lies_within(typed, folder) for folder in allowed):
        raise SegcoreError(f"{what} {typed!r} lies outside the folders this dashboard may read "
                           f"({', '.join(str(f) for f in allowed)}); {remedy}")
    return Path(typed)
