"""Run directories: the manifest (run.json), the training history (history.csv) and validation.csv.

The layout is a contract (see DESIGN.md)::

    RUN_DIR/run.json         name, model and options, class names, dataset path and checksum, seed,
                             git commit, library versions, created time, wall time
    RUN_DIR/checkpoint.pt    best weights        RUN_DIR/last.pt    latest weights and optimizer state
    RUN_DIR/history.csv      epoch, iteration, lr, loss, loss_<term>…, images_per_s
    RUN_DIR/validation.csv   epoch, iteration, and the validation metrics that pick checkpoint.pt

Every file is replaced atomically, so a reader (the dashboard) never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segcore.errors import SegcoreError

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"
LAST = "last.pt"
HISTORY = "history.csv"
VALIDATION = "validation.csv"


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, content: Any) -> None:
    """Atomically write ``content`` as indented JSON."""
    write_text_atomic(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run directory."""
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SegcoreError(f"{run_dir} is not a run directory: it has no {RUN_FILE}.") from None
    except json.JSONDecodeError as error:
        raise SegcoreError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); the run is damaged.") from None


def git_commit() -> str | None:
    """The commit of the segcore source tree, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=True)
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on."""
    import numpy
    import pycocotools
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "pycocotools": getattr(pycocotools, "__version__", "unknown"),
    }


def now() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class CsvLog:
    """An append-only CSV table whose columns are fixed by its first row, rewritten atomically.

    Small (one row per logged step), so it is kept in memory and the whole file rewritten each time:
    a reader never sees a torn row, and a resumed run can drop rows past the resumed iteration.
    """

    def __init__(self, path: str | Path, *, keep_until_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if keep_until_iteration is not None and self.path.exists():
            with self.path.open(newline="") as file:
                self.rows = [r for r in csv.DictReader(file) if int(r["iteration"]) <= keep_until_iteration]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        columns = list(self.rows[0])
        for r in self.rows[1:]:
            columns += [c for c in r if c not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())
