"""The shape of every contract file of a run directory, declared once (see DESIGN.md):

    run.json                                 :class:`RunManifest`
    evals/<dataset>-<split>/metrics.json     :class:`Metrics`
    evals/<dataset>-<split>/curves.json      :class:`Curves`
    evals/<dataset>-<split>/per_image.csv    :data:`PER_IMAGE`
    evals/<dataset>-<split>/per_instance.csv :data:`PER_INSTANCE`
    history.csv, validation.csv              :data:`HISTORY`, :data:`VALIDATION`
    comparisons/*.json                       :class:`Comparison`

JSON files are TypedDicts checked by pydantic in strict mode: no text read as a number, no 1.0 or true read as
a count; numbers are finite (JSON's null where a metric cannot be computed), ids and counts fit 64 bits. Keys
segcore does not write are allowed, so that a file written by a newer segcore still reads. Tables are declared
by their required columns and the columns that must hold numbers.

:mod:`segcore.runs` reads every file through these checks, so a file of the wrong shape inside is one
SegcoreError naming the file, the field and what is wrong, and what to do; the dashboard lists the run as
damaged (:mod:`segcore.runs.health`) and its pages leave out only that file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import Required, TypedDict

from segcore.errors import SegcoreError

#: Ids and counts are held as signed 64-bit integers (numpy, pandas, pycocotools).
MAX_ID = 2 ** 63 - 1
#: segcore's files nest 4 levels deep (metrics.json's breakdowns.mean_iou.area.small); keys it does not write
#: may nest deeper, but not without bound: the dashboard's caches hash what they are given, recursively.
MAX_DEPTH = 16

Number = Annotated[float, Field(allow_inf_nan=False)]  # an integer too: json.dumps writes the count 3 as 3
Score = Number | None  # None: cannot be computed (no ground truth of a class, no prediction kept)
Scores = dict[str, Score]
Count = Annotated[int, Field(ge=0, le=MAX_ID)]
Id = Annotated[int, Field(ge=-MAX_ID - 1, le=MAX_ID)]
Pair = Annotated[list[Number], Field(min_length=2, max_length=2)]

# ---- run.json (segcore.training.loop writes a trained run's, segcore.evaluation.scoring an imported one's) ----


class DatasetRecord(TypedDict, total=False):
    """run.json's "dataset": what the run was trained on, or the ground truth an external run was scored on."""

    path: str
    name: str
    checksum: str | None
    split: str  # external runs
    train_split: str
    val_split: str | None
    train_images: Count
    val_images: Count
    skipped: dict[str, dict[str, Count]] | None  # split -> reason -> count, with --skip-invalid


class BestRecord(TypedDict, total=False):
    """run.json's "best": the validation whose weights are checkpoint.pt."""

    metric: str | None
    value: Score
    epoch: Count
    iteration: Count


class TrainerRecord(TypedDict, total=False):
    """run.json's "trainer": the process training the run (segcore.liveness)."""

    host: str
    pid: Id
    started: str  # ISO 8601 UTC, as the heartbeat
    heartbeat: str


class Resumption(TypedDict, total=False):
    at_iteration: Count
    time: str


class RunManifest(TypedDict, total=False):
    """run.json: a trained run's manifest, also while it trains, or an imported results file's (kind "external")."""

    name: Required[str]
    kind: Required[str]
    model: str | None
    model_kind: str | None
    options: dict[str, Any]  # the model's own dataclass checks them when a model is built
    class_names: list[str]
    category_ids: list[Id]
    dataset: DatasetRecord
    training: dict[str, Any]  # segcore.training.config checks them when a run is resumed
    predictions: str
    precision: str | None
    seed: Id | None
    git_commit: str | None
    versions: dict[str, str]
    created: str
    wall_time_s: Number
    device: str
    world_size: Count
    epochs_done: Count
    iterations_done: Count
    best: BestRecord | None
    resumed: list[Resumption]
    trainer: TrainerRecord | None
    status: str


# ---- metrics.json and curves.json (segcore.evaluation.scoring) ----


class CocoScores(TypedDict, total=False):
    """COCOeval's 12 numbers (None for its -1), AP per class and per extra area range."""

    AP: Score
    AP50: Score
    AP75: Score
    APs: Score
    APm: Score
    APl: Score
    AR1: Score
    AR10: Score
    AR100: Score
    ARs: Score
    ARm: Score
    ARl: Score
    per_class: Scores
    area_ranges: Scores


class BoundaryScores(CocoScores, total=False):
    mean_iou: Score


class SemanticScores(TypedDict, total=False):
    mIoU: Score
    pixel_accuracy: Score
    mean_class_accuracy: Score
    per_class_iou: Scores


class Speed(TypedDict, total=False):
    """Milliseconds per image at batch 1 (segcore.evaluation.speed), and the model's size."""

    device: str
    precision: str | None
    image_size: list[Count]
    timed_images: Count
    preprocess_ms_p50: Score
    preprocess_ms_p90: Score
    model_ms_p50: Score
    model_ms_p90: Score
    postprocess_ms_p50: Score
    postprocess_ms_p90: Score
    total_ms_p50: Score
    total_ms_p90: Score
    params: Count
    flops: Number | None


class MeanIouBreakdowns(TypedDict, total=False):
    area: Scores
    occlusion: Scores
    objects_per_image: Scores


class Breakdowns(TypedDict, total=False):
    """AP by occlusion bin and by objects per image, and the mean instance IoU by those and by size."""

    occlusion: Scores
    objects_per_image: Scores
    mean_iou: MeanIouBreakdowns


class CalibrationBin(TypedDict):
    low: Number
    high: Number
    count: Count
    mean_score: Score
    mean_iou: Score


class Calibration(TypedDict, total=False):
    bins: list[CalibrationBin]
    expected_calibration_error: Score


class AttentionFocus(TypedDict, total=False):
    """segcore.metrics.attention.focus_of_matches, for a mask branch with spatial attention."""

    focus_mean: Score
    focus_median: Score
    instances: Count
    focus_iou_spearman: Score
    focus_interval: Pair | None
    focus_iou_spearman_interval: Pair | None
    interval_images: Count


class Source(TypedDict, total=False):
    """What was scored: a run's checkpoint on a dataset split, or a results file against a ground truth."""

    run: str | None
    checkpoint: str | None
    model: str | None
    data: str | None
    split: str | None
    precision: str | None
    gt: str | None
    predictions: str | None


class Skipped(TypedDict, total=False):
    """What --skip-invalid left out, by reason."""

    ground_truth: dict[str, Count]
    predictions: dict[str, Count]


class Metrics(TypedDict, total=False):
    """metrics.json of an eval folder; a section that cannot be computed is absent."""

    name: str
    n_images: Required[Count]
    source: Required[Source]
    created: str
    segm: CocoScores
    bbox: CocoScores
    boundary: BoundaryScores
    semantic: SemanticScores
    speed: Speed
    breakdowns: Breakdowns
    occlusion_source: str
    attention: AttentionFocus
    calibration: Calibration
    skipped: Skipped


class PrecisionRecall(TypedDict, total=False):
    """One IoU type's precision at COCO's 101 recall points, averaged over classes, and per class."""

    recall: Required[list[Number]]
    precision: Required[list[Score]]
    precision50: Required[list[Score]]
    precision75: Required[list[Score]]
    per_class_precision: dict[str, list[Score] | None]


class Curves(TypedDict, total=False):
    """curves.json of an eval folder: what the Leaderboard draws."""

    segm: PrecisionRecall | None
    bbox: PrecisionRecall | None
    calibration: Calibration


# ---- comparisons/*.json (segcore.evaluation.compare) ----


class ComparedRun(TypedDict, total=False):
    name: Required[str]
    run: str
    eval: str


class PairedInterval(TypedDict, total=False):
    """A metric's difference B − A with its 95% paired bootstrap interval."""

    difference: Required[Number]
    low: Required[Number]
    high: Required[Number]
    resamples: Count
    confidence: Number
    p_value: Score
    n_images: Count
    a: Score
    b: Score


class DifferingImage(TypedDict, total=False):
    image_id: Required[Id]
    file_name: Required[str]
    a: Score
    b: Score
    difference: Score


class Comparison(TypedDict, total=False):
    """A comparison file that ``segcore compare`` writes into run B."""

    a: Required[ComparedRun]
    b: Required[ComparedRun]
    data: str
    split: str
    difference: str
    resamples: Required[Count]
    seed: Required[Id]
    metrics: Required[dict[str, PairedInterval]]
    most_different: Required[dict[str, list[DifferingImage]]]
    created: str


@dataclass(frozen=True)
class JsonFile:
    """A JSON contract file: its shape, and what to do when a file is not of it."""

    shape: Any
    remedy: str
    adapter: TypeAdapter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapter", TypeAdapter(self.shape))

    def check(self, path: str | Path, content: Any) -> Any:
        """``content`` (parsed from ``path``) as it is, when it has the shape; else one SegcoreError sentence
        naming the file, the first field that is wrong and what is wrong with it."""
        if _deeper_than(content, MAX_DEPTH):
            raise SegcoreError(f"{path} nests its JSON more than {MAX_DEPTH} levels deep, deeper than segcore writes; "
                               f"{self.remedy}")
        try:
            self.adapter.validate_python(content, strict=True)
        except ValidationError as error:
            raise SegcoreError(_sentence(Path(path), content, error.errors(include_url=False)[0], self.remedy)) \
                from None
        return content


RUN = JsonFile(RunManifest, "the run is damaged: restore run.json, or train or import the run again.")
METRICS = JsonFile(Metrics, "evaluate the run again.")
CURVES = JsonFile(Curves, "evaluate the run again.")
COMPARISON = JsonFile(Comparison, "run segcore compare again.")

# ---- the tables ----


@dataclass(frozen=True)
class Table:
    """A CSV contract file: the columns it must have, those that must hold numbers, and how it is written.

    Attributes:
        required: columns every such table has.
        numeric: columns that hold numbers wherever they are present (an empty cell is a missing value).
        numeric_prefixes: likewise, every column whose name starts with one of these.
        ids: numeric columns of ids: whole numbers within 64 bits.
        complete: columns without empty cells (ids among them are read as integers).
        whole: written at once and ending with a line end (a file without one was cut short); a table of no
            rows is written as one empty line.
        grows: written a row at a time while a run trains: a reader may meet the last row unfinished, which
            is left out rather than read.
        remedy: what to do with a table that is not of this shape.
    """

    required: tuple[str, ...]
    numeric: tuple[str, ...]
    remedy: str
    numeric_prefixes: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    complete: tuple[str, ...] = ()
    whole: bool = False
    grows: bool = False

    def numeric_columns(self, columns) -> list[str]:
        """The columns of ``columns`` that must hold numbers."""
        return [c for c in columns if c in self.numeric or (isinstance(c, str) and c.startswith(self.numeric_prefixes))]

    def check(self, path: str | Path, table):
        """``table`` (a pandas DataFrame read from ``path``) as it is, when it has this shape; else one
        SegcoreError sentence naming the file, the column and what is wrong."""
        import numpy as np
        import pandas as pd

        path = Path(path)
        if len(table.columns) == 0:
            if self.whole and path.stat().st_size <= 1:  # a table of no rows: written as an empty line
                return table
            raise SegcoreError(f"{path} is empty; {self.remedy}")
        if self.whole and not _ends_with_line_end(path):
            raise SegcoreError(f"{path} is cut short (its last line is unfinished); {self.remedy}")
        missing = [c for c in self.required if c not in table]
        if missing:
            raise SegcoreError(f"{path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)} (it is not "
                               f"the table segcore writes); {self.remedy}")
        for column in self.numeric_columns(table.columns):
            values = table[column]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                raise SegcoreError(f"{path} holds text where {_shown(column)} should be a number; {self.remedy}")
            numbers = values.to_numpy(dtype=np.float64)
            if np.isinf(numbers).any():
                raise SegcoreError(f"{path} holds an infinite number in the column {_shown(column)}; {self.remedy}")
            if column in self.ids:
                _check_ids(path, column, values, numbers, self.remedy)
        for column in self.complete:
            if table[column].isna().any():
                raise SegcoreError(f"{path} has empty cells in the column {_shown(column)}; {self.remedy}")
        return table


_EVALUATE = "evaluate the run again."
_TRAIN = "train the run again (or resume it) to rewrite it."
#: per_image.csv: one row per image of the split (segcore.metrics.matching.per_image_metrics).
PER_IMAGE = Table(
    required=("image_id", "file_name", "n_objects", "mean_occlusion", "tp", "fp", "fn", "precision", "recall", "f1",
              "mean_iou", "mean_boundary_iou"),
    numeric=("image_id", "n_objects", "mean_occlusion", "tp", "fp", "fn", "precision", "recall", "f1", "mean_iou",
             "mean_boundary_iou", "semantic_miou", "pixel_accuracy"),
    ids=("image_id",), complete=("image_id",), whole=True, remedy=_EVALUATE)
#: per_instance.csv: one row per ground truth and per prediction (segcore.metrics.matching.match_instances).
PER_INSTANCE = Table(
    required=("image_id", "gt_id", "pred_id", "category", "score", "iou", "boundary_iou", "area_bucket", "occlusion",
              "error_type"),
    numeric=("image_id", "gt_id", "pred_id", "score", "iou", "boundary_iou", "occlusion", "attention_focus"),
    ids=("image_id", "gt_id", "pred_id"), complete=("image_id", "error_type"), whole=True, remedy=_EVALUATE)
#: history.csv: one row per logged step (segcore.training.loop).
HISTORY = Table(required=("epoch", "iteration", "lr", "loss", "images_per_s"),
                numeric=("epoch", "iteration", "lr", "loss", "images_per_s"), numeric_prefixes=("loss_",),
                grows=True, remedy=_TRAIN)
#: validation.csv: one row per validation (segcore.training.loop); older runs lack minutes, images and the AP columns.
VALIDATION = Table(required=("epoch", "iteration"), numeric=("epoch", "iteration", "minutes", "images"),
                   numeric_prefixes=("val_",), grows=True, remedy=_TRAIN)


# ---- the sentences ----

#: What segcore writes where pydantic reports each kind of error.
_EXPECTED = {"dict_type": "an object", "typed_dict_type": "an object", "list_type": "an array",
             "string_type": "a string", "int_type": "a whole number", "float_type": "a number",
             "bool_type": "true or false", "none_required": "null", "finite_number": "a finite number",
             "too_short": "an array of two numbers", "too_long": "an array of two numbers"}


def _sentence(path: Path, content: Any, error: dict, remedy: str) -> str:
    kind, value = error["type"], error.get("input")
    place = _field(content, error["loc"], missing=kind == "missing")
    if kind == "missing":
        return f"{path} lacks \"{place}\" (it is not the {path.name} segcore writes); {remedy}"
    where = f'at "{place}"' if place else "at its top level"
    if kind in ("greater_than_equal", "less_than_equal"):  # the bounds of Count and Id
        if kind == "greater_than_equal" and error.get("ctx", {}).get("ge") == 0 and value >= -MAX_ID - 1:
            return f"{path} holds a negative number {where} where segcore writes a count; {remedy}"
        return f"{path} holds a number beyond 64 bits {where} where segcore writes an id or a count; {remedy}"
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return f"{path} holds a number too large to be held {where} where segcore writes a number; {remedy}"
    if kind not in _EXPECTED:
        return f"{path} holds {_describe(value)} {where}, which segcore does not write ({error['msg']}); {remedy}"
    return f"{path} holds {_describe(value)} {where} where segcore writes {_EXPECTED[kind]}; {remedy}"


def _field(content: Any, loc: tuple, *, missing: bool) -> str:
    """The field path of an error's ``loc`` ("breakdowns.occlusion", "calibration.bins[3].count"), without
    the names pydantic gives the members of a union (steps that are not in the content)."""
    parts: list[str] = []
    here = content
    for i, step in enumerate(loc):
        if isinstance(here, dict) and step in here:
            parts.append(_shown(step) if not parts else f".{_shown(step)}")
            here = here[step]
        elif isinstance(here, list) and isinstance(step, int) and 0 <= step < len(here):
            parts.append(f"[{step}]")
            here = here[step]
        elif missing and i == len(loc) - 1:
            parts.append(_shown(step) if not parts else f".{_shown(step)}")
    text = "".join(parts)
    return text if len(text) <= 120 else text[:117] + "..."


def _shown(name: Any) -> str:
    """A key or column name as a sentence can hold it: printable, 40 characters at most."""
    text = "".join(c if c.isprintable() else "?" for c in str(name))
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(value: Any) -> str:
    """A JSON value's kind, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number" if value == value and abs(value) != float("inf") else "a number that is not finite"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a value")


def _check_ids(path: Path, column: str, values, numbers, remedy: str) -> None:
    """A column of ids holds whole numbers within 64 bits: a column without empty cells as integers, as
    segcore writes ids, one with empty cells (as floats) of whole values."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_integer_dtype(values):
        beyond = pd.api.types.is_unsigned_integer_dtype(values) and len(values) and values.max() > MAX_ID
        fraction = False
    else:
        present = numbers[~np.isnan(numbers)]
        beyond, fraction = (np.abs(present) >= 2.0 ** 63).any(), (present != np.floor(present)).any()
    if beyond:
        raise SegcoreError(f"{path} holds an id beyond 64 bits in the column {_shown(column)}; {remedy}")
    if fraction or not values.isna().any() and not pd.api.types.is_integer_dtype(values):
        raise SegcoreError(f"{path} holds ids that are not written as integers in the column {_shown(column)}; "
                           f"{remedy}")


def _deeper_than(content: Any, levels: int) -> bool:
    """Whether JSON ``content`` nests objects and arrays more than ``levels`` deep (without recursion)."""
    stack = [(content, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > levels:
                return True
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return False


def _ends_with_line_end(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"
