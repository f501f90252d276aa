"""Comparison files: what ``segcore compare RUN_A RUN_B`` writes into run B, found and read.

    RUN_B/comparisons/<dataset>-<split>-vs-<name of A>.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcore.errors import SegcoreError
from segcore.runs import schemas
from segcore.runs.eval_folder import PER_IMAGE, read_metrics
from segcore.runs.files import read_json, stamp

#: The folder of run B that holds its comparisons.
COMPARISONS = "comparisons"


def comparison_stem(evaluation: str, name_a: str) -> str:
    """The stem of the file ``segcore compare`` writes into run B: "<evaluation>-vs-<name of A>".

    A run's name is a label that anyone can write into run.json ("../../elsewhere", "/etc/x"), so it is made
    one plain file name here: path separators and control characters become "_", and it is cut to 120 bytes.
    Plain names (letters, digits, "-", "_", ".") are kept as they are.
    """
    plain = "".join("_" if c in "/\\" or ord(c) < 32 or ord(c) == 127 else c for c in str(name_a))
    return f"{evaluation}-vs-" + plain.encode()[:120].decode(errors="ignore")


def comparison_files(run_dir: str | Path) -> dict[str, Path]:
    """The comparisons written by ``segcore compare`` into a run (as run B), by file stem."""
    folder = Path(run_dir) / COMPARISONS
    return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def read_comparison(path: str | Path) -> schemas.Comparison:
    """A comparison file written by ``segcore compare`` (:class:`segcore.runs.schemas.Comparison`)."""
    comparison = read_json(Path(path), missing="has no such comparison; run segcore compare.",
                           damaged=schemas.COMPARISON.remedy)
    return schemas.COMPARISON.check(path, comparison)


def compared_pairs(manifests: list[dict[str, Any]], evaluation: str) -> list[tuple[str, str]]:
    """(A, B) run paths of the comparisons already written among ``manifests`` (find_runs' entries) on
    ``evaluation`` ("<dataset>-<split>"), in their order: what ``segcore compare`` wrote into B.

    A is the run whose path the comparison records or, failing that, the only run with its name, so that
    runs sharing a name (runs/maskrcnn and data/zoo/maskrcnn) are never paired with the wrong partner.
    """
    by_path = {Path(m["path"]).resolve(): m["path"] for m in manifests}
    by_name: dict[str, list[str]] = {}
    for manifest in manifests:
        by_name.setdefault(str(manifest.get("name")), []).append(manifest["path"])
    pairs = []
    for manifest in manifests:
        b = manifest["path"]
        for stem, path in comparison_files(b).items():
            if not stem.startswith(f"{evaluation}-vs-"):
                continue
            try:
                recorded = read_comparison(path)["a"]
            except SegcoreError:  # a damaged comparison is simply not offered
                continue
            a = by_path.get(Path(recorded["run"]).resolve()) if recorded.get("run") else None
            if a is None:
                named = by_name.get(str(recorded.get("name") or stem.removeprefix(f"{evaluation}-vs-")), [])
                a = named[0] if len(named) == 1 else None
            if a is not None and a != b:
                pairs.append((a, b))
    return pairs


def comparison_is_current(path: str | Path, *eval_folders: str | Path) -> bool:
    """Whether the comparison file was made after the evaluations it compares, by the times the files
    record: a git checkout gives files new modification times in path order, which says nothing."""
    made = read_comparison(path).get("created")
    evaluated = [read_metrics(folder).get("created") for folder in eval_folders]
    if made and all(evaluated):
        return all(made >= time for time in evaluated)  # ISO 8601 UTC strings sort as times
    return stamp(path)[0] > max(t or 0 for t in stamp(*(Path(f) / PER_IMAGE for f in eval_folders)))
