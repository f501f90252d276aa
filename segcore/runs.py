"""Run directories: the manifest (run.json), the training history (history.csv) and validation.csv.

The layout is a contract (see DESIGN.md)::

    RUN_DIR/run.json         name, model and options, class names, dataset path and checksum, seed,
                             git commit, library versions, created time, wall time
    RUN_DIR/checkpoint.pt    best weights        RUN_DIR/last.pt    latest weights and optimizer state
    RUN_DIR/history.csv      epoch, iteration, lr, loss, loss_<term>…, images_per_s
    RUN_DIR/validation.csv   epoch, iteration, and the validation metrics that pick checkpoint.pt
    RUN_DIR/evals/<dataset>-<split>/   eval folders (see segcore.scoring)
    RUN_DIR/comparisons/*.json         ``segcore compare`` files with this run as B

Every file is replaced atomically, so a reader (the dashboard) never sees half a file. This module is the
dashboard's only way in: it reads every file the pages show, each checked whole against its shape in
:mod:`segcore.schemas`, so that a file of the wrong shape inside is one SegcoreError naming the file and the
field, never a traceback on a page.

Files can still be damaged by hand, by a full disk or by a copy cut short: :mod:`segcore.run_health` says
which files of a run are damaged and why, so that a page leaves out only what cannot be read. Names
that end up in paths (a run's name in a comparison's file name, a split, a folder typed into the dashboard)
go through :func:`comparison_stem`, :func:`segcore.layout.check_split` and :func:`confine`, so none leads
outside its folder.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segcore import atomic, layout, schemas
from segcore.errors import SegcoreError
from segcore.layout import check_split, lies_within

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"
LAST = "last.pt"
HISTORY = "history.csv"
VALIDATION = "validation.csv"


def write_json(path: str | Path, content: Any) -> None:
    """Atomically write ``content`` as indented JSON."""
    atomic.write_text(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


#: JSON's names for what json.loads returns, for messages.
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def read_json(path: Path, *, missing: str, damaged: str, expect: type = dict) -> Any:
    """A JSON file segcore wrote, whose top level is ``expect`` (an object, or a list for predictions);
    ``missing`` ("<folder> ...") and ``damaged`` ("<file> is not valid JSON; ...") finish the error sentence
    for those cases."""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise SegcoreError(f"{path.parent} {missing}") from None
    except json.JSONDecodeError as error:
        raise SegcoreError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); {damaged}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SegcoreError(f"{path} cannot be read ({error}); {damaged}") from None
    except ValueError:  # Python reads integers of at most 4300 digits
        raise SegcoreError(f"{path} holds a number too long to read; {damaged}") from None
    except RecursionError:
        raise SegcoreError(f"{path} nests its JSON too deeply to read; {damaged}") from None
    if not isinstance(content, expect):
        raise SegcoreError(f"{path} holds {_JSON_TYPES.get(type(content), 'JSON')} where segcore writes "
                           f"{_JSON_TYPES[expect]}; {damaged}")
    return content


def read_run(run_dir: str | Path) -> schemas.RunManifest:
    """The manifest of a run directory, of the shape :class:`segcore.schemas.RunManifest` declares (at least
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


class CsvLog:
    """A CSV table that grows by one row per logged step; its columns are the first row's, widened (the
    file rewritten atomically) when a later row brings new ones, e.g. a run resumed by a newer segcore.

    Rows are appended and flushed one line at a time, as a training log is (a reader may at worst see
    the last line cut short). On resume the file is first rewritten, atomically, without the rows past
    the resumed iteration, so that no step is logged twice.
    """

    def __init__(self, path: str | Path, *, keep_until_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        if keep_until_iteration is None or not self.path.exists():
            self.path.unlink(missing_ok=True)
            return
        with self.path.open(newline="") as file:
            reader = csv.DictReader(file)
            # a row cut short (a full disk, a power cut) has missing cells, one of extra cells a None key
            kept = [r for r in reader if None not in r and None not in r.values()
                    and r.get("iteration", "").isdigit() and int(r["iteration"]) <= keep_until_iteration]
            self.columns = reader.fieldnames
        if not self.columns:
            self.path.unlink()
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic.write_text(self.path, buffer.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Add one row; a column it lacks stays empty in it."""
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        elif not set(row) <= set(self.columns):
            self._widen([key for key in row if key not in self.columns])
        with self.path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.columns, lineterminator="\n")
            if new_file:
                writer.writeheader()
            writer.writerow(row)

    def _widen(self, added: list[str]) -> None:
        with self.path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        self.columns = [*self.columns, *added]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(self.path, buffer.getvalue())


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


def eval_folders(run_dir: str | Path) -> dict[str, Path]:
    """The eval folders of a run, by name ("<dataset>-<split>"); half-written ones are never listed."""
    evals = Path(run_dir) / "evals"
    if not evals.is_dir():
        return {}
    return {p.name: p for p in sorted(evals.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / "metrics.json").is_file()}


def read_metrics(eval_folder: str | Path) -> schemas.Metrics:
    """The metrics.json of an eval folder (:class:`segcore.schemas.Metrics`)."""
    path = Path(eval_folder) / "metrics.json"
    metrics = read_json(path, missing="is not an eval folder: it has no metrics.json; run segcore eval.",
                        damaged=schemas.METRICS.remedy)
    return schemas.METRICS.check(path, metrics)


#: Where the dashboard looks for run directories, besides the folders named in $SEGCORE_RUNS.
DEFAULT_ROOTS = ("runs", "data/zoo")
RUNS_VARIABLE = "SEGCORE_RUNS"


def run_roots(*extra: str | Path) -> list[Path]:
    """The folders holding run directories: runs/, data/zoo/, those in ``$SEGCORE_RUNS`` (separated by
    ``os.pathsep``) and ``extra``, each once."""
    named = [*DEFAULT_ROOTS, *filter(None, os.environ.get(RUNS_VARIABLE, "").split(os.pathsep)), *extra]
    return list(dict.fromkeys(Path(p) for p in named))


def stamp(*paths: str | Path) -> tuple:
    """Modification times (ns) of ``paths``, None for a missing one: a cache key that changes when a file
    is rewritten (files here are replaced atomically, so a new file means a new time)."""
    out = []
    for path in paths:
        try:
            out.append(Path(path).stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


def read_table(path: str | Path, contract: schemas.Table | None = None):
    """A CSV file of a run or an eval folder as a pandas DataFrame, checked against ``contract`` where given
    (:mod:`segcore.schemas`); an empty one for a missing file.

    pandas is imported here, not at the top, so the command line starts without it.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    remedy = contract.remedy if contract is not None else "evaluate or train the run again."
    try:
        if contract is not None and contract.grows:  # a row being written is not read
            text = path.read_bytes()
            table = pd.read_csv(io.BytesIO(text[:text.rfind(b"\n") + 1]))
        else:
            table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        said = " ".join(str(error).split())  # pandas ends some of its messages with a line end
        raise SegcoreError(f"{path} is not a readable CSV table ({said}); {remedy}") from None
    return contract.check(path, table) if contract is not None else table


def read_history(run_dir: str | Path):
    """history.csv of a run: one row per logged iteration (epoch, iteration, lr, loss, loss_<term>…,
    images_per_s; :data:`segcore.schemas.HISTORY`); empty when the run has none (an imported results file).
    A row still being written is left out."""
    return read_table(Path(run_dir) / HISTORY, schemas.HISTORY)


def read_validation(run_dir: str | Path):
    """validation.csv of a run: one row per validation (epoch, iteration, minutes since the run started,
    images validated, val_mask_AP, val_box_AP, val_mIoU, val_pixel_accuracy; :data:`segcore.schemas.VALIDATION`);
    runs trained before segcore validated by mask AP have the semantic scores alone (val_mIoU,
    val_pixel_accuracy, val_mean_class_accuracy). Empty when the run has none."""
    return read_table(Path(run_dir) / VALIDATION, schemas.VALIDATION)


def selected_iteration(manifest: dict) -> int | None:
    """The iteration whose weights are the run's checkpoint.pt (the best validation), where the run says."""
    best = manifest.get("best")
    iteration = best.get("iteration") if isinstance(best, dict) else None
    return iteration if isinstance(iteration, int) and not isinstance(iteration, bool) else None


def read_per_image(eval_folder: str | Path):
    """per_image.csv of an eval folder: one row per image (:data:`segcore.schemas.PER_IMAGE`)."""
    return read_table(Path(eval_folder) / "per_image.csv", schemas.PER_IMAGE)


def read_per_instance(eval_folder: str | Path):
    """per_instance.csv of an eval folder: one row per ground truth and per prediction
    (:data:`segcore.schemas.PER_INSTANCE`)."""
    return read_table(Path(eval_folder) / "per_instance.csv", schemas.PER_INSTANCE)


def read_curves(eval_folder: str | Path) -> schemas.Curves:
    """curves.json of an eval folder: precision-recall curves per IoU type and the score calibration
    (:class:`segcore.schemas.Curves`)."""
    path = Path(eval_folder) / "curves.json"
    curves = read_json(path, missing="is not an eval folder: it has no curves.json; run segcore eval.",
                       damaged=schemas.CURVES.remedy)
    return schemas.CURVES.check(path, curves)


def read_predictions(eval_folder: str | Path) -> list[dict[str, Any]]:
    """predictions.json of an eval folder: COCO results entries."""
    return read_json(Path(eval_folder) / "predictions.json", missing="is not an eval folder: it has no "
                     "predictions.json; run segcore eval.", damaged="evaluate the run again.", expect=list)


def comparison_files(run_dir: str | Path) -> dict[str, Path]:
    """The comparisons written by ``segcore compare`` into a run (as run B), by file stem."""
    folder = Path(run_dir) / "comparisons"
    return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


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
    return stamp(path)[0] > max(t or 0 for t in stamp(*(Path(f) / "per_image.csv" for f in eval_folders)))


def read_comparison(path: str | Path) -> schemas.Comparison:
    """A comparison file written by ``segcore compare`` (:class:`segcore.schemas.Comparison`)."""
    comparison = read_json(Path(path), missing="has no such comparison; run segcore compare.",
                           damaged=schemas.COMPARISON.remedy)
    return schemas.COMPARISON.check(path, comparison)


def comparison_stem(evaluation: str, name_a: str) -> str:
    """The stem of the file ``segcore compare`` writes into run B: "<evaluation>-vs-<name of A>".

    A run's name is a label that anyone can write into run.json ("../../elsewhere", "/etc/x"), so it is made
    one plain file name here: path separators and control characters become "_", and it is cut to 120 bytes.
    Plain names (letters, digits, "-", "_", ".") are kept as they are.
    """
    plain = "".join("_" if c in "/\\" or ord(c) < 32 or ord(c) == 127 else c for c in str(name_a))
    return f"{evaluation}-vs-" + plain.encode()[:120].decode(errors="ignore")


def eval_name(data: str | Path, split: str) -> str:
    """The eval folder's name for ``split`` of the dataset folder ``data``: "<dataset>-<split>"."""
    return f"{Path(data).resolve().name}-{check_split(split)}"


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
    raise SegcoreError(f"{eval_folder}/metrics.json does not say which data it scored; evaluate the run again.")
