"""COCO results files: segcore's predictions written as entries (:func:`to_coco_results`), and another tool's
file (Detectron2, MMDetection, Ultralytics ``save_json``) read for scoring (:func:`load_results`).

A results file is a JSON list with one entry per detection::

    {"image_id": 42, "category_id": 3, "score": 0.97,
     "bbox": [x, y, w, h],                                     # and/or
     "segmentation": {"size": [h, w], "counts": "..."}}         # compressed RLE, counts as str

Also accepted, and converted to the form above: RLE counts written as a Python bytes literal
(``"b'...'"``), uncompressed RLE (counts as a list of run lengths), polygons (a list of [x1, y1, x2, y2,
...] lists), and Ultralytics' string image ids (the image's file name without extension). An entry with a
mask but no box gets the mask's bounding box, as ``COCO.loadRes`` gives it.

Everything is checked before pycocotools sees it, because pycocotools trusts its input: an RLE whose runs
overrun the image corrupts memory instead of failing. A problem is reported as one :class:`ResultsError`
naming the first bad entry (by its index in the list) and how many more there are; or, when the caller
asks for it (``segcore eval --skip-invalid``), invalid entries are left out and counted by reason
(:data:`SKIP_REASONS`). An empty list is valid: no detections.

Boxes follow the ground truth's rule (:func:`segcore.coco.instances.clip_box`): a box that reaches at most
2 pixels past its image is clipped to it, one further out (or wholly outside) is refused. A mask without
a pixel is kept: it is a valid detection that COCO scores as a false positive, and detectors write them
for objects too small for their mask resolution.

This module must not import torch (a :class:`Prediction` arrives made), so that ``segcore eval --predictions``
starts fast.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
from pycocotools import mask as mask_utils

from segcore.background import Background
from segcore.coco.instances import box_problem, clip_box, is_number, polygon_problem, short
from segcore.coco.rle import MAX_ENCODED_PIXELS, compressed_rle_totals_and_areas
from segcore.collection import collector_paused
from segcore.errors import SegcoreError

if TYPE_CHECKING:
    from segcore.models.prediction import Prediction

_ID_HINT = "check that the results were made on this dataset"
_FORMAT_HINT = "check the tool that wrote it against COCO's results format (cocodataset.org/#format-results)"
_BOX_HINT = "check that its boxes are [x, y, width, height] in pixels of that image"

#: reason -> (phrase for one entry, phrase for many) of the entries ``--skip-invalid`` leaves out.
_ENTRY_REASONS = {
    "not an object": ("that is not a JSON object", "that are not JSON objects"),
    "missing key": ("without an image_id, category_id or score",) * 2,
    "unknown image id": ("of an unknown image", "of unknown images"),
    "unknown category id": ("of an unknown category", "of unknown categories"),
    "invalid score": ("with a malformed score", "with malformed scores"),
    "invalid bbox": ("with a malformed bbox", "with malformed bboxes"),
    "bbox outside image": ("with a bbox outside its image", "with bboxes outside their images"),
    "invalid polygon": ("with an invalid polygon", "with invalid polygons"),
    "invalid rle": ("with a malformed RLE mask", "with malformed RLE masks"),
    "no bbox or segmentation": ("with neither a bbox nor a segmentation",) * 2,
    "mixed masks": ("with or without a mask against the rest", "with or without masks against the rest"),
}
#: reason -> (what is skipped, phrase for one, phrase for many), for :func:`segcore.coco.instances.skipped_summary`.
SKIP_REASONS = {reason: ("entry", *phrases) for reason, phrases in _ENTRY_REASONS.items()}

#: (skip reason, what is wrong, what to do) of an invalid entry.
Problem = tuple[str, str, str]


class ResultsError(SegcoreError):
    """A results file that cannot be scored as it is."""


def _as_id(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


#: Marks a key the entry does not have (None is a value an entry may hold, and is refused).
_ABSENT = object()
#: The largest float; an int past 2**53 has no exact float, and the full check words it.
_FINITE, _EXACT = sys.float_info.max, 2 ** 53


class _Checker:
    """Checks and normalizes entries against one ground truth; collects problems by entry index."""

    def __init__(self, coco_gt, gt_name: str):
        self.gt_name = gt_name
        self.images = {int(i): img for i, img in coco_gt.imgs.items()}
        self.categories = {int(c) for c in coco_gt.cats}
        self.stems: dict[str, int] = {}
        self.shared_stems: set[str] = set()  # file names in two folders, or of two extensions: which is meant?
        for image_id, img in self.images.items():
            if isinstance(img.get("file_name"), str):
                stem = Path(img["file_name"]).stem
                if stem in self.stems:
                    self.shared_stems.add(stem)
                self.stems[stem] = image_id

        # (height, width) of the images a mask may be given for, for the common case's inline check
        self.sizes = {image_id: size for image_id in self.images
                      if (size := self.image_size(image_id)) is not None and min(size) >= 1}

    def common(self, entry) -> dict | None:
        """The normalized entry where it has the common shape (integer ids of the ground truth, a finite score,
        a box inside its image, a mask as a compressed RLE string of the image's size) and is valid, checked
        inline in a few microseconds; else None, and :meth:`entry` checks it and words what is wrong. Both
        give the same entry where both accept it."""
        if type(entry) is not dict:
            return None
        image_id, category_id, score = entry.get("image_id"), entry.get("category_id"), entry.get("score")
        # exact types: a bool is no id, and an int past 2**53 is no float (entry() words both)
        if type(image_id) is not int or type(category_id) is not int or category_id not in self.categories:
            return None
        size = self.sizes.get(image_id)
        if size is None:
            return None
        if type(score) is float:
            if not -_FINITE < score < _FINITE:
                return None
        elif type(score) is not int or not -_EXACT <= score <= _EXACT:
            return None
        out = {"image_id": image_id, "category_id": category_id, "score": float(score)}
        height, width = size
        bbox = entry.get("bbox", _ABSENT)
        if bbox is not _ABSENT:
            if type(bbox) is not list or len(bbox) != 4:
                return None
            x, y, w, h = bbox
            if not (type(x) is float or type(x) is int and -_EXACT <= x <= _EXACT) \
                    or not (type(y) is float or type(y) is int and -_EXACT <= y <= _EXACT) \
                    or not (type(w) is float or type(w) is int and -_EXACT <= w <= _EXACT) \
                    or not (type(h) is float or type(h) is int and -_EXACT <= h <= _EXACT):
                return None
            x, y, w, h = float(x), float(y), float(w), float(h)
            # a finite box inside its image, kept as clip_box keeps it (NaN fails every comparison)
            if not (0 <= x < width and 0 <= y < height and w >= 0 and h >= 0 and 0 < x + w <= width
                    and 0 < y + h <= height):
                return None
            out["bbox"] = [x, y, (x + w) - x, (y + h) - y]
        segmentation = entry.get("segmentation", _ABSENT)
        if segmentation is not _ABSENT:
            if type(segmentation) is not dict:
                return None
            counts, mask_size = segmentation.get("counts"), segmentation.get("size")
            if type(counts) is not str or type(mask_size) is not list or len(mask_size) != 2 \
                    or type(mask_size[0]) is not int or type(mask_size[1]) is not int \
                    or mask_size[0] != height or mask_size[1] != width or counts[:2] in ("b'", 'b"'):
                return None
            out["segmentation"] = {"size": [height, width], "counts": counts}  # counts checked in one batch
        elif bbox is _ABSENT:
            return None
        return out

    def image_id(self, value) -> tuple[int | None, str | None]:
        """(the GT's image id, None) or (None, what is wrong)."""
        if isinstance(value, str):  # Ultralytics writes the file name's stem when it is not a number
            if value in self.shared_stems:
                return None, f"has image_id {value!r}, the file name of more than one image in {self.gt_name}"
            if value in self.stems:
                found = self.stems[value]
                number = int(value) if value.isascii() and value.isdigit() else None
                if number is not None and number != found and number in self.images:
                    # the same entry would name another image read as an id: refused rather than guessed
                    return None, (f"has image_id {value!r}, which names image {found} by its file name but is the "
                                  f"id of image {number} in {self.gt_name}")
                return found, None
            return None, f"has image_id {value!r}, which names no image in {self.gt_name}"
        image_id = _as_id(value)
        if image_id is None:
            return None, f"has an image_id that is not an integer ({short(value)})"
        if image_id not in self.images:
            return None, f"has image_id {image_id}, which is not in {self.gt_name}"
        return image_id, None

    def image_size(self, image_id: int) -> tuple[int, int] | None:
        img = self.images[image_id]
        height, width = _as_id(img.get("height")), _as_id(img.get("width"))
        return (height, width) if height is not None and width is not None else None

    def entry(self, entry) -> tuple[dict | None, Problem | None]:
        """(normalized entry, None) or (None, problem); masks come back with counts still to check."""
        if not isinstance(entry, dict):
            return None, ("not an object", f"is a JSON {type(entry).__name__}, not an object", _FORMAT_HINT)
        for key in ("image_id", "category_id", "score"):
            if key not in entry:
                return None, ("missing key", f"has no \"{key}\"", _FORMAT_HINT)
        image_id, problem = self.image_id(entry["image_id"])
        if problem:
            return None, ("unknown image id", problem, _ID_HINT)
        category_id = _as_id(entry["category_id"])
        if category_id is None:
            return None, ("unknown category id", f"has a category_id that is not an integer "
                                                 f"({short(entry['category_id'])})", _FORMAT_HINT)
        if category_id not in self.categories:
            return None, ("unknown category id", f"has category_id {category_id}, which is not in {self.gt_name}",
                          _ID_HINT)
        if not is_number(entry["score"]):
            return None, ("invalid score", f"has a score that is not a finite number ({short(entry['score'])})",
                          _FORMAT_HINT)
        out = {"image_id": image_id, "category_id": category_id, "score": float(entry["score"])}
        if "bbox" in entry:
            problem = box_problem(entry["bbox"])
            if problem:
                return None, ("invalid bbox", problem, _FORMAT_HINT)
            image_size = self.image_size(image_id)
            if image_size is None:
                return None, ("invalid bbox", f"has a bbox, but image {image_id} has no height and width in "
                                              f"{self.gt_name}", _FORMAT_HINT)
            out["bbox"], problem = clip_box(entry["bbox"], *image_size, image_id=image_id)
            if problem:
                return None, ("bbox outside image", problem, _BOX_HINT)
        if "segmentation" in entry:
            segmentation, problem = self.segmentation(entry["segmentation"], image_id)
            if problem:
                reason = "invalid polygon" if isinstance(entry["segmentation"], list) else "invalid rle"
                return None, (reason, problem, _FORMAT_HINT)
            out["segmentation"] = segmentation
        elif "bbox" not in out:
            return None, ("no bbox or segmentation", "has neither a bbox nor a segmentation", _FORMAT_HINT)
        return out, None

    def segmentation(self, value, image_id: int) -> tuple[dict | None, str | None]:
        image_size = self.image_size(image_id)
        if image_size is None or min(image_size) < 1:
            return None, f"has a mask, but image {image_id} has no height and width in {self.gt_name}"
        if isinstance(value, list):
            if not value or not all(isinstance(p, list) and len(p) % 2 == 0 and all(is_number(v) for v in p)
                                    for p in value):
                return None, "has a segmentation that is neither RLE nor a list of polygons [x1, y1, x2, y2, ...]"
            height, width = image_size
            for polygon in value:
                problem = polygon_problem(polygon, height, width, image_id=image_id)
                if problem:
                    return None, problem
            rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in value], height, width))
            return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}, None
        if not (isinstance(value, dict) and "size" in value and "counts" in value):
            return None, "has a segmentation that is neither RLE {\"size\", \"counts\"} nor polygons"
        size = value["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(_as_id(v) is not None for v in size)):
            return None, "has an RLE \"size\" that is not [height, width]"
        size = [int(v) for v in size]
        if tuple(size) != image_size:
            return None, (f"has an RLE mask of size {size}, but image {image_id} is "
                          f"{image_size[0]} x {image_size[1]} (height x width) in {self.gt_name}")
        counts = value["counts"]
        if isinstance(counts, list):  # uncompressed RLE: check the runs, then let pycocotools compress it
            if not all(_as_id(v) is not None and v >= 0 for v in counts) or sum(counts) != size[0] * size[1]:
                return None, f"has uncompressed RLE counts that are not runs covering {size[0] * size[1]} pixels"
            rle = mask_utils.frPyObjects({"size": size, "counts": [int(v) for v in counts]}, *size)
            return {"size": size, "counts": rle["counts"].decode("ascii")}, None
        if not isinstance(counts, str):
            return None, "has RLE \"counts\" that are neither a string nor a list"
        if len(counts) >= 3 and counts.startswith(("b'", 'b"')) and counts[-1] == counts[1]:
            counts = counts[2:-1]  # str(bytes) written by a tool that forgot to decode
        return {"size": size, "counts": counts}, None  # counts checked in one batch by parse_results


#: Strings checked in the caller alone below this many; above, half of them on another core.
SPLIT_AT = 20_000


def _checked_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """compressed_rle_totals_and_areas of a results file's strings: the second half decoded in a forked
    process beside the first (:mod:`segcore.background`), for a COCO-scale file."""
    if len(strings) < SPLIT_AT:
        return compressed_rle_totals_and_areas(strings)
    half = len(strings) // 2
    second = Background(lambda: compressed_rle_totals_and_areas(strings[half:]))
    totals, areas = compressed_rle_totals_and_areas(strings[:half])
    more_totals, more_areas = second.result()
    return np.concatenate([totals, more_totals]), np.concatenate([areas, more_areas])


class CheckedResults(list):
    """Checked results entries (a list, written and read as one), with what checking them learned: the
    area of each entry's mask (``mask_areas``, (N,) float64, None for box-only results), which COCO
    evaluation would otherwise compute again, one pycocotools call per mask."""

    mask_areas: np.ndarray | None = None


def parse_results(data, coco_gt, *, source: str = "results", gt_name: str = "the ground truth",
                  skipped: Counter | None = None) -> list[dict]:
    """Check and normalize parsed results JSON; see :func:`load_results`.

    Args:
        data: the parsed JSON (anything).
        coco_gt: a pycocotools ``COCO`` with the ground truth the results were made on.
        source: the results file's name, for messages.
        gt_name: the ground truth file's name, for messages.
        skipped: where given, invalid entries are left out and counted in it by reason (:data:`SKIP_REASONS`)
            instead of refused.

    Raises:
        ResultsError: naming the first invalid entry and how many more there are (not with ``skipped``).
    """
    if not isinstance(data, list):
        kind = "a ground-truth file (it has \"annotations\")" if isinstance(data, dict) and "annotations" in data \
            else f"a JSON {type(data).__name__}"
        raise ResultsError(f"{source}: holds {kind}, not a list of detections; pass a COCO results file.")
    checker = _Checker(coco_gt, gt_name)
    entries: list[dict | None] = []
    problems: dict[int, Problem] = {}
    for index, entry in enumerate(data):
        out, problem = checker.common(entry), None
        if out is None:
            out, problem = checker.entry(entry)
        entries.append(out)
        if problem:
            problems[index] = problem

    compressed = [i for i, e in enumerate(entries) if e is not None and "segmentation" in e]
    totals, areas = _checked_strings([entries[i]["segmentation"]["counts"] for i in compressed])
    for index, total in zip(compressed, totals):
        height, width = entries[index]["segmentation"]["size"]
        if total != height * width:
            problems[index] = ("invalid rle", "has malformed RLE counts" if total < 0 else
                               f"has RLE counts that cover {total} pixels instead of {height * width}", _FORMAT_HINT)

    # Masks for every entry or for none: among the entries valid so far, flag the minority.
    checked = [i for i, e in enumerate(entries) if e is not None and i not in problems]
    masked = {i for i in checked if "segmentation" in entries[i]}
    if 0 < len(masked) < len(checked):
        minority_has_mask = len(masked) * 2 <= len(checked)
        for index in checked:
            if (index in masked) == minority_has_mask:
                problems.setdefault(index, (
                    "mixed masks", "has a segmentation while most entries have none" if minority_has_mask else
                    "has no segmentation while most entries have one", "give masks for every entry or for none"))

    if problems and skipped is None:
        first = min(problems)
        _, problem, hint = problems[first]
        more = f" (and {len(problems) - 1} more entries are invalid)" if len(problems) > 1 else ""
        raise ResultsError(f"{source}: entry {first} {problem}{more}; {hint}, or pass --skip-invalid to skip "
                           f"invalid entries.")
    if skipped is not None:
        skipped.update(reason for reason, _, _ in problems.values())
    mask_area = dict(zip(compressed, areas.tolist()))
    kept = [index for index in range(len(entries)) if index not in problems]
    entries = CheckedResults(entries[index] for index in kept)
    if kept and all(index in mask_area for index in kept):  # every entry kept has a mask
        entries.mask_areas = np.array([mask_area[index] for index in kept], dtype=np.float64)
    for entry in entries:
        if "segmentation" in entry and "bbox" not in entry:
            entry["bbox"] = [float(v) for v in mask_utils.toBbox(entry["segmentation"])]
    return entries


def parse_json(text: bytes):
    """``json.loads(text)``, by orjson where it can (twice as fast on a COCO-scale file). What orjson refuses
    (NaN and infinity, lone surrogates, a byte-order mark, anything that is not JSON) goes to ``json.loads``,
    which takes what it takes and words a refusal with its line and column. One difference stays: an integer
    past 64 bits reads as the nearest float, where the standard library keeps it exact; no such number is a
    valid id, box or RLE size, and as a score it reads as the same float either way."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@collector_paused()
def load_results(path: str | Path, coco_gt, *, gt_name: str | None = None, skipped: Counter | None = None,
                 source: str | None = None) -> list[dict]:
    """Read, check and normalize a COCO results file made on ``coco_gt``'s images.

    Args:
        path: the results JSON file.
        coco_gt: a pycocotools ``COCO`` with the ground truth.
        gt_name: how to name the ground truth in messages (its file name); default "the ground truth".
        skipped: where given, invalid entries are left out and counted in it by reason (:data:`SKIP_REASONS`)
            instead of refused; the file itself must still be a JSON list.
        source: how to name the file in messages; default its name.

    Returns:
        One dict per detection: "image_id" (int), "category_id" (int), "score" (float), "bbox" [x, y, w, h]
        floats, and "segmentation" {"size": [h, w], "counts": str} (compressed RLE) when the file has
        masks. Every entry has a segmentation or none does. An empty list means no detections.

    Raises:
        ResultsError: the file is missing, not JSON (the message gives the line and column), not a list, or
            has invalid entries (unknown image or category ids, wrong types, malformed RLE, boxes outside
            the image, ...); the message names the first by its index and counts the rest.
    """
    path = Path(path)
    source = source or path.name
    try:
        data = parse_json(path.read_bytes())
    except OSError as error:
        raise ResultsError(f"{path}: cannot be read ({error.strerror or error}); check the path.") from None
    except json.JSONDecodeError as error:
        raise ResultsError(f"{source}: is not valid JSON ({error.msg} at line {error.lineno}, column "
                           f"{error.colno}); pass the results file the tool wrote.") from None
    except (ValueError, RecursionError) as error:  # bytes that are not UTF-8 text, or nesting too deep
        raise ResultsError(f"{source}: is not valid JSON ({str(error)[:80]}); "
                           "pass the results file the tool wrote.") from None
    return parse_results(data, coco_gt, source=source, gt_name=gt_name or "the ground truth", skipped=skipped)


def has_masks(results: list[dict]) -> bool:
    """Whether checked results carry masks (a box-only file scores box metrics only)."""
    return any("segmentation" in entry for entry in results)


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> compressed RLE with ``counts`` as str, as COCO's JSON files hold it."""
    # pycocotools would write past its buffer; predict and the dataset reader refuse such images first
    assert mask.size <= MAX_ENCODED_PIXELS, mask.shape
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def to_coco_results(prediction: Prediction, image_id: int, category_ids: list[int]) -> list[dict]:
    """One image's instances as COCO results entries.

    Args:
        prediction: the image's prediction.
        image_id: the COCO image id.
        category_ids: COCO category id of each label 1..K (``category_ids[label - 1]``).

    Returns:
        entries with image_id, category_id, segmentation (RLE), bbox [x, y, w, h] and score.
    """
    prediction = prediction.to("cpu")
    entries = []
    for mask, box, label, score in zip(prediction.masks.numpy(), prediction.boxes.tolist(),
                                       prediction.labels.tolist(), prediction.scores.tolist()):
        x1, y1, x2, y2 = box
        entries.append({
            "image_id": int(image_id),
            "category_id": int(category_ids[label - 1]),
            "segmentation": encode_mask(mask),
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(score), 5),
        })
    return entries
