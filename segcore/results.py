"""Read another tool's COCO results file (Detectron2, MMDetection, Ultralytics ``save_json``) for scoring.

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
naming the first bad entry and how many more there are. An empty list is valid: no detections.

This module must not import torch, so that ``segcore eval --predictions`` starts fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pycocotools import mask as mask_utils

from segcore.errors import SegcoreError
from segcore.rle import compressed_rle_totals

_ID_HINT = "check that the results were made on this dataset"
_FORMAT_HINT = "check the tool that wrote it against COCO's results format (cocodataset.org/#format-results)"


class ResultsError(SegcoreError):
    """A results file that cannot be scored as it is."""


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _as_id(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


class _Checker:
    """Checks and normalizes entries against one ground truth; collects problems by entry index."""

    def __init__(self, coco_gt, gt_name: str):
        self.gt_name = gt_name
        self.images = {int(i): img for i, img in coco_gt.imgs.items()}
        self.categories = {int(c) for c in coco_gt.cats}
        self.stems: dict[str, int] = {}
        for image_id, img in self.images.items():
            if isinstance(img.get("file_name"), str):
                self.stems[Path(img["file_name"]).stem] = image_id

    def image_id(self, value) -> tuple[int | None, str | None]:
        if isinstance(value, str):  # Ultralytics writes the file name's stem when it is not a number
            if value in self.stems:
                return self.stems[value], None
            return None, f"has image_id {value!r}, which names no image in {self.gt_name}"
        image_id = _as_id(value)
        if image_id is None:
            return None, f"has an image_id that is not an integer ({_short(value)})"
        if image_id not in self.images:
            return None, f"has image_id {image_id}, which is not in {self.gt_name}"
        return image_id, None

    def image_size(self, image_id: int) -> tuple[int, int] | None:
        img = self.images[image_id]
        height, width = _as_id(img.get("height")), _as_id(img.get("width"))
        return (height, width) if height is not None and width is not None else None

    def entry(self, entry) -> tuple[dict | None, str | None, str]:
        """(normalized entry, None, "") or (None, problem, hint); masks come back with counts to check."""
        if not isinstance(entry, dict):
            return None, f"is a JSON {type(entry).__name__}, not an object", _FORMAT_HINT
        for key in ("image_id", "category_id", "score"):
            if key not in entry:
                return None, f"has no \"{key}\"", _FORMAT_HINT
        image_id, problem = self.image_id(entry["image_id"])
        if problem:
            return None, problem, _ID_HINT
        category_id = _as_id(entry["category_id"])
        if category_id is None:
            return None, f"has a category_id that is not an integer ({_short(entry['category_id'])})", _FORMAT_HINT
        if category_id not in self.categories:
            return None, f"has category_id {category_id}, which is not in {self.gt_name}", _ID_HINT
        if not _is_number(entry["score"]):
            return None, f"has a score that is not a finite number ({_short(entry['score'])})", _FORMAT_HINT
        out = {"image_id": image_id, "category_id": category_id, "score": float(entry["score"])}
        if "bbox" in entry:
            bbox = entry["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                return None, "has a bbox that is not four numbers [x, y, width, height]", _FORMAT_HINT
            if bbox[2] < 0 or bbox[3] < 0:
                return None, f"has a bbox with a negative width or height ({bbox})", _FORMAT_HINT
            out["bbox"] = [float(v) for v in bbox]
        if "segmentation" in entry:
            segmentation, problem = self.segmentation(entry["segmentation"], image_id)
            if problem:
                return None, problem, _FORMAT_HINT
            out["segmentation"] = segmentation
        elif "bbox" not in out:
            return None, "has neither a bbox nor a segmentation", _FORMAT_HINT
        return out, None, ""

    def segmentation(self, value, image_id: int) -> tuple[dict | None, str | None]:
        image_size = self.image_size(image_id)
        if image_size is None or min(image_size) < 1:
            return None, f"has a mask, but image {image_id} has no height and width in {self.gt_name}"
        if isinstance(value, list):
            if not value or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                    and all(_is_number(v) for v in p) for p in value):
                return None, "has a segmentation that is neither RLE nor a list of polygons [x1, y1, x2, y2, ...]"
            height, width = image_size
            if any(not (-width <= x <= 2 * width and -height <= y <= 2 * height) for p in value
                   for x, y in zip(p[0::2], p[1::2])):  # pycocotools would rasterize their whole outline
                return None, f"has polygon points far outside the {height} x {width} image {image_id}"
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


def _short(value) -> str:
    text = json.dumps(value, allow_nan=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_results(data, coco_gt, *, source: str = "results", gt_name: str = "the ground truth") -> list[dict]:
    """Check and normalize parsed results JSON; see :func:`load_results`.

    Args:
        data: the parsed JSON (anything).
        coco_gt: a pycocotools ``COCO`` with the ground truth the results were made on.
        source: the results file's name, for messages.
        gt_name: the ground truth file's name, for messages.

    Raises:
        ResultsError: naming the first invalid entry and how many more there are.
    """
    if not isinstance(data, list):
        kind = "a ground-truth file (it has \"annotations\")" if isinstance(data, dict) and "annotations" in data \
            else f"a JSON {type(data).__name__}"
        raise ResultsError(f"{source}: holds {kind}, not a list of detections; pass a COCO results file.")
    checker = _Checker(coco_gt, gt_name)
    entries: list[dict | None] = []
    problems: dict[int, tuple[str, str]] = {}
    for index, entry in enumerate(data):
        out, problem, hint = checker.entry(entry)
        entries.append(out)
        if problem:
            problems[index] = (problem, hint)

    compressed = [i for i, e in enumerate(entries) if e is not None and "segmentation" in e]
    totals = compressed_rle_totals([entries[i]["segmentation"]["counts"] for i in compressed])
    for index, total in zip(compressed, totals):
        height, width = entries[index]["segmentation"]["size"]
        if total != height * width:
            problems[index] = ("has malformed RLE counts" if total < 0 else
                               f"has RLE counts that cover {total} pixels instead of {height * width}"), _FORMAT_HINT

    # Masks for every entry or for none: among the entries valid so far, flag the minority.
    checked = [i for i, e in enumerate(entries) if e is not None]
    masked = {i for i in checked if "segmentation" in entries[i]}
    if 0 < len(masked) < len(checked):
        minority_has_mask = len(masked) * 2 <= len(checked)
        for index in checked:
            if (index in masked) == minority_has_mask:
                problems.setdefault(index, (
                    "has a segmentation while most entries have none" if minority_has_mask else
                    "has no segmentation while most entries have one", "give masks for every entry or for none"))

    if problems:
        first = min(problems)
        problem, hint = problems[first]
        more = f" (and {len(problems) - 1} more entries are invalid)" if len(problems) > 1 else ""
        raise ResultsError(f"{source}: entry {first} {problem}{more}; {hint}.")
    for entry in entries:
        if "segmentation" in entry and "bbox" not in entry:
            entry["bbox"] = [float(v) for v in mask_utils.toBbox(entry["segmentation"])]
    return entries


def load_results(path: str | Path, coco_gt, *, gt_name: str | None = None) -> list[dict]:
    """Read, check and normalize a COCO results file made on ``coco_gt``'s images.

    Args:
        path: the results JSON file.
        coco_gt: a pycocotools ``COCO`` with the ground truth.
        gt_name: how to name the ground truth in messages (its file name); default "the ground truth".

    Returns:
        One dict per detection: "image_id" (int), "category_id" (int), "score" (float), "bbox" [x, y, w, h]
        floats, and "segmentation" {"size": [h, w], "counts": str} (compressed RLE) when the file has
        masks. Every entry has a segmentation or none does. An empty list means no detections.

    Raises:
        ResultsError: the file is missing, not JSON, not a list, or has invalid entries (unknown image or
            category ids, wrong types, malformed RLE, ...); the message names the first and counts them.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except OSError as error:
        raise ResultsError(f"{path}: cannot be read ({error.strerror or error}); check the path.") from None
    except (ValueError, RecursionError) as error:
        raise ResultsError(f"{path.name}: is not valid JSON ({str(error)[:80]}); "
                           "pass the results file the tool wrote.") from None
    return parse_results(data, coco_gt, source=path.name, gt_name=gt_name or "the ground truth")


def has_masks(results: list[dict]) -> bool:
    """Whether checked results carry masks (a box-only file scores box metrics only)."""
    return any("segmentation" in entry for entry in results)
