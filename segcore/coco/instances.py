"""COCO instances files (a split's ground truth): read and checked before pycocotools or a model sees them.

Shared by the dataset reader (:class:`segcore.data.CocoSegmentation`: train, eval RUN_DIR) and by scoring
(:func:`segcore.evaluation.scoring.load_ground_truth`: eval --gt --predictions, compare, the dashboard), so both refuse
the same things with the same sentences. pycocotools trusts its input: an RLE whose runs overrun the
image writes outside its buffer, a polygon point at 1e12 crashes the process and one at NaN rasterizes for
a minute. So everything is checked here first, and a problem is one :class:`DatasetError` sentence naming
the file, the id and what to do:

* the file: JSON (a syntax error with its line and column), an object with "images", "annotations" and
  "categories" lists;
* ids: every image, annotation and category has an integer "id", unique in its list (always refused);
* an image: a "file_name", positive integer "height" and "width", at most :data:`MAX_IMAGE_PIXELS`; with an
  image folder, its file exists;
* an annotation: an integer "image_id" of a listed image and "category_id" of a listed category; a
  segmentation that is polygons (at least 3 points of finite numbers, none far outside the image) or an
  RLE mask of the image's size whose runs cover it exactly; a mask of at least one pixel; "area" a
  number >= 0 and "iscrowd" 0 or 1 where given; a "bbox" of four numbers with a width and height > 0, within
  the image by the rule of :func:`clip_box`.

With ``skip_invalid`` an invalid annotation, or an image with a bad entry or without its file (and its
annotations), is left out and counted by reason instead; :func:`skipped_summary` says what and how much.

Kept annotations are completed as pycocotools' COCOeval needs them: where absent, "area" is the mask's
pixel count, "iscrowd" 0 and "bbox" the mask's box; a box slightly past the image is clipped. Torch-free,
so that scoring a results file starts fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pycocotools import mask as mask_utils

from segcore.coco.rle import MAX_ENCODED_PIXELS, compressed_rle_total, compressed_rle_totals_and_areas
from segcore.collection import collector_paused
from segcore.data.layout import lies_within
from segcore.errors import DatasetError, json_problem

#: Pixels an image may have (just under 4096 x 4096): every mask of an image is encoded by pycocotools,
#: whose encoder writes past its buffer for larger masks (see :data:`segcore.coco.rle.MAX_ENCODED_PIXELS`), so a
#: JSON that claims a larger image is refused before any mask is made for it.
MAX_IMAGE_PIXELS = MAX_ENCODED_PIXELS

#: Pixels a box may reach past an image edge and be clipped rather than refused. COCO's own boxes, made
#: from polygons with sub-pixel points, stray a fraction of a pixel; a box further out is usually one of
#: another image size, or [x1, y1, x2, y2] written as [x, y, width, height].
BOX_TOLERANCE = 2.0

#: reason -> (what is skipped, phrase for one, phrase for many), for :func:`skipped_summary`.
SKIP_REASONS = {
    "missing image file": ("image", "with a missing file", "with missing files"),
    "invalid image": ("image", "with a malformed entry", "with malformed entries"),
    "unknown image id": ("annotation", "of an unknown image", "of unknown images"),
    "unknown category id": ("annotation", "of an unknown category", "of unknown categories"),
    "missing segmentation": ("annotation", "without a segmentation", "without segmentations"),
    "invalid polygon": ("annotation", "with an invalid polygon", "with invalid polygons"),
    "invalid rle": ("annotation", "with a malformed RLE mask", "with malformed RLE masks"),
    "empty mask": ("annotation", "with an empty mask", "with empty masks"),
    "invalid bbox": ("annotation", "with a malformed bbox", "with malformed bboxes"),
    "bbox outside image": ("annotation", "with a bbox outside its image", "with bboxes outside their images"),
    "invalid area or iscrowd": ("annotation", "with a malformed area or iscrowd", "with malformed areas or iscrowds"),
}


@dataclass
class Instances:
    """A checked instances file: what was kept, as a COCO dict, and what was skipped by reason."""

    path: Path
    dataset: dict
    categories: dict[int, dict]
    skipped: Counter = field(default_factory=Counter)

    def coco(self):
        """The kept data as an indexed pycocotools ``COCO``."""
        from pycocotools.coco import COCO

        coco = COCO()
        coco.dataset = self.dataset
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            coco.createIndex()
        return coco


@collector_paused()
def read_instances(path: str | os.PathLike, *, image_dir: str | os.PathLike | None = None,
                   skip_invalid: bool = False, require_masks: bool = True) -> Instances:
    """Read and check a COCO instances file (see the module's docstring for what is checked).

    Args:
        path: the JSON file.
        image_dir: the folder the images' "file_name"s are in; None checks no files.
        skip_invalid: leave invalid annotations and images out and count them, instead of refusing.
        require_masks: every annotation needs a mask, and a box with an inside (training targets). False
            for a ground truth that is only scored: an annotation with a box and no segmentation is kept
            (a detection dataset), and a flat box is scored as COCO scores it.

    Raises:
        DatasetError: one sentence naming the file, the id and what to do.
    """
    path = Path(path)
    data = load_json(path)
    categories = check_categories(data["categories"], path)
    checker = _Checker(path, None if image_dir is None else Path(image_dir), skip_invalid, require_masks)
    images = checker.images(data["images"])
    annotations = checker.annotations(data["annotations"], images, set(categories))
    dataset = dict(data, images=[images[i] for i in sorted(images)], annotations=annotations)
    return Instances(path, dataset, categories, checker.skipped)


def load_json(path: Path) -> dict:
    """The file's JSON object with its three lists, or a DatasetError naming the file."""
    if not path.is_file():
        raise DatasetError(f"no annotation file at {path}; a dataset folder holds "
                           f"ROOT/annotations/instances_<split>.json and the images in ROOT/<split>/.")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (ValueError, RecursionError) as error:  # not JSON, not text, nested or numbered past reading
        remedy = ("fix or regenerate the file" if isinstance(error, json.JSONDecodeError) else
                  "it should be a COCO instances JSON file")
        raise DatasetError(f"{path} {json_problem(error)}; {remedy}.") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a JSON {type(data).__name__}, not an object; it should be a COCO "
                           f"instances file with \"images\", \"annotations\" and \"categories\".")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path} has no \"{key}\" list; a COCO instances file needs \"images\", "
                               f"\"annotations\" and \"categories\".")
    return data


def check_categories(entries: list, path: Path) -> dict[int, dict]:
    """Category entries by id; each needs a unique integer id and a name."""
    categories: dict[int, dict] = {}
    for position, category in enumerate(entries):
        category_id = _entry_id(category, position, "category", path)
        if category_id in categories:
            raise DatasetError(f"category id {category_id} appears twice in {path}; give every category its own id.")
        if not isinstance(category.get("name"), str):
            raise DatasetError(f"category {category_id} in {path} has no \"name\"; add one.")
        categories[category_id] = category
    return categories


def skipped_summary(skipped: Counter, reasons: dict[str, tuple[str, str, str]] = SKIP_REASONS) -> str:
    """One line such as "skipped 3 annotations with empty masks, 1 image with a missing file"."""
    if not skipped:
        return "skipped nothing"
    parts = []
    for reason, count in skipped.most_common():
        kind, one, many = reasons[reason]
        kinds = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"  # "entry" -> "entries"
        parts.append(f"{count} {kind} {one}" if count == 1 else f"{count} {kinds} {many}")
    return "skipped " + ", ".join(parts)


def box_problem(bbox) -> str | None:
    """What is wrong with a COCO box [x, y, width, height] on its own, or None: four finite numbers,
    width and height >= 0."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        return "has a bbox that is not four numbers [x, y, width, height]"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"has a bbox {_box_text(bbox)} with a negative width or height"
    return None


def clip_box(bbox: list, height: int, width: int, *,
             image_id: int | None = None) -> tuple[list[float] | None, str | None]:
    """A well-formed box [x, y, width, height] clipped to its image, or why it is refused.

    The rule: the box overlaps the image (x < W, y < H, x + w > 0, y + h > 0) and reaches at most
    :data:`BOX_TOLERANCE` pixels past any edge; the part past an edge is clipped off, as COCO's tools
    clip boxes. A box further out is refused.

    Returns:
        (clipped box, None), or (None, a phrase such as "has a bbox ... that lies outside its 64x64 image"),
        which names the image when ``image_id`` is given.
    """
    x, y, w, h = (float(v) for v in bbox)
    image = _image_text(height, width, image_id)
    if not (x < width and y < height and x + w > 0 and y + h > 0):
        return None, f"has a bbox {_box_text(bbox)} that lies outside {image}"
    past = max(-x, -y, x + w - width, y + h - height)
    if past > BOX_TOLERANCE:
        return None, (f"has a bbox {_box_text(bbox)} that reaches {past:g} pixels past {image} "
                      f"(boxes may reach {BOX_TOLERANCE:g} pixels past an edge, which are clipped off)")
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    return [x1, y1, x2 - x1, y2 - y1], None


def polygon_problem(polygon, height: int, width: int, *, image_id: int | None = None) -> str | None:
    """What is wrong with one polygon [x1, y1, x2, y2, ...] of an image (named when ``image_id`` is given),
    or None.

    At least 3 points of finite numbers, each within one image size of the image (-W <= x <= 2W,
    -H <= y <= 2H): pycocotools rasterizes a polygon's whole outline, so a point far out costs time and
    memory without end (and one at 1e12 crashes it).
    """
    if not isinstance(polygon, list):
        return "has a polygon that is not a list of coordinates"
    if not all(is_number(v) for v in polygon):
        return "has a polygon coordinate that is not a finite number"
    if len(polygon) % 2:
        return f"has a polygon with an odd number of coordinates ({len(polygon)})"
    if len(polygon) < 6:
        return f"has a polygon with {len(polygon) // 2} points (at least 3 are needed)"
    if any(not (-width <= x <= 2 * width and -height <= y <= 2 * height)
           for x, y in zip(polygon[0::2], polygon[1::2])):
        return f"has polygon points far outside {_image_text(height, width, image_id)}"
    return None


def is_number(value) -> bool:
    """A finite JSON number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


class _Checker:
    """Checks one file's entries; refuses the first problem, or with ``skip_invalid`` counts it."""

    def __init__(self, path: Path, image_dir: Path | None, skip_invalid: bool, require_masks: bool = True):
        self.path, self.image_dir, self.skip_invalid, self.require_masks = path, image_dir, skip_invalid, require_masks
        self.skipped: Counter = Counter()
        self.listed_images: set[int] = set()  # every listed image id, kept or skipped

    def reject(self, reason: str, sentence: str) -> None:
        if not self.skip_invalid:
            raise DatasetError(sentence)
        self.skipped[reason] += 1

    def images(self, entries: list) -> dict[int, dict]:
        """Image entries to keep, by id; the ids of all listed images are checked for repeats."""
        images: dict[int, dict] = {}
        seen: set[int] = set()
        for position, image in enumerate(entries):
            image_id = _entry_id(image, position, "image", self.path)
            if image_id in seen:
                raise DatasetError(f"image id {image_id} appears twice in {self.path}; give every image its own id.")
            seen.add(image_id)
            problem = _image_problem(image)
            if problem is None and self.image_dir is not None and not lies_within(self.image_dir / image["file_name"],
                                                                                   self.image_dir):
                # the ground truth's word: "../../secret.png" must not make a reader open files elsewhere
                problem = f"has a \"file_name\" ({short(image['file_name'])}) that leads outside {self.image_dir}"
            if problem is not None:
                self.reject("invalid image", f"image {image_id} in {self.path} {problem}; fix its entry, or pass "
                                             f"--skip-invalid to skip such images.")
                continue
            if self.image_dir is not None and not os.path.exists(self.image_dir / image["file_name"]):
                self.reject("missing image file", f"image {image_id} of {self.path} has no file at "
                            f"{self.image_dir / image['file_name']} (the layout is ROOT/<split>/<file_name>); put the "
                            f"image there, or pass --skip-invalid to skip images without files.")
                continue
            images[image_id] = image
        self.listed_images = seen
        return images

    def annotations(self, entries: list, images: dict[int, dict], category_ids: set[int]) -> list[dict]:
        """The annotations to keep, completed with area, iscrowd and a clipped bbox."""
        kept, seen = [], set()
        decoded = _decoded_strings(entries)
        for position, annotation in enumerate(entries):
            annotation_id = _entry_id(annotation, position, "annotation", self.path)
            if annotation_id in seen:
                raise DatasetError(f"annotation id {annotation_id} appears twice in {self.path}; "
                                   f"give every annotation its own id.")
            seen.add(annotation_id)
            image_id = annotation.get("image_id")
            if _is_int(image_id) and image_id in self.listed_images and image_id not in images:
                continue  # its image was skipped, and counted once as an image
            checked, problem = _check_annotation(annotation, images, category_ids, self.require_masks,
                                                 decoded.get(position))
            if problem is not None:
                reason, what = problem
                self.reject(reason, f"annotation {annotation_id} in {self.path} {what}; fix or remove it, "
                                    f"or pass --skip-invalid to skip such annotations.")
                continue
            kept.append(checked)
        return kept


def _decoded_strings(entries: list) -> dict[int, tuple[int, int]]:
    """position -> (pixels covered, foreground pixels) of every annotation whose mask is a compressed RLE
    string, decoded together (one string at a time costs a millisecond each, a COCO split tens of thousands);
    -1 for both where the string is malformed."""
    positions, strings = [], []
    for position, annotation in enumerate(entries):
        segmentation = annotation.get("segmentation") if isinstance(annotation, dict) else None
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
            positions.append(position)
            strings.append(segmentation["counts"])
    totals, areas = compressed_rle_totals_and_areas(strings)  # batch by batch: memory bounded by a batch
    return {p: (int(total), int(area)) for p, total, area in zip(positions, totals, areas)}


def _check_annotation(annotation: dict, images: dict[int, dict], category_ids: set[int], require_masks: bool = True,
                      decoded: tuple[int, int] | None = None) -> tuple[dict | None, tuple[str, str] | None]:
    """(the annotation completed, None) or (None, (skip reason, what is wrong)); ``decoded`` is the
    (pixels covered, foreground pixels) of its compressed RLE string (:func:`_decoded_strings`)."""
    image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
    if not _is_int(image_id):
        return None, ("unknown image id", "has no integer \"image_id\"" if image_id is None
                      else f"has an \"image_id\" that is not an integer ({short(image_id)})")
    if image_id not in images:
        return None, ("unknown image id", f"refers to image {image_id}, which is not in its \"images\" list")
    if not _is_int(category_id):
        return None, ("unknown category id", "has no integer \"category_id\"" if category_id is None
                      else f"has a \"category_id\" that is not an integer ({short(category_id)})")
    if category_id not in category_ids:
        return None, ("unknown category id", f"refers to category {category_id}, which is not in its "
                                             f"\"categories\" list")
    height, width = images[image_id]["height"], images[image_id]["width"]
    box_only = not require_masks and not annotation.get("segmentation") and "bbox" in annotation
    problem = None if box_only else _segmentation_problem(annotation.get("segmentation"), height, width,
                                                            None if decoded is None else decoded[0])
    if problem is not None:
        return None, problem
    if "area" in annotation and not (is_number(annotation["area"]) and annotation["area"] >= 0):
        return None, ("invalid area or iscrowd", f"has an \"area\" that is not a number >= 0 "
                                                 f"({short(annotation['area'])})")
    if "iscrowd" in annotation and annotation["iscrowd"] not in (0, 1):
        return None, ("invalid area or iscrowd", f"has an \"iscrowd\" that is neither 0 nor 1 "
                                                 f"({short(annotation['iscrowd'])})")
    bbox = None
    if "bbox" in annotation:
        problem = box_problem(annotation["bbox"])
        if problem is not None:
            return None, ("invalid bbox", problem)
        bbox, problem = clip_box(annotation["bbox"], height, width)
        if problem is not None:
            return None, ("bbox outside image", problem)
        if require_masks and (bbox[2] == 0 or bbox[3] == 0):  # a model's training targets need an inside
            return None, ("invalid bbox", f"has a bbox {_box_text(annotation['bbox'])} of zero width or height")
    if box_only:
        completed = {k: v for k, v in annotation.items() if k != "segmentation"}
        return dict(completed, iscrowd=int(annotation.get("iscrowd", 0)), bbox=bbox,
                    area=annotation["area"] if "area" in annotation else bbox[2] * bbox[3]), None
    rle = _mask_rle(annotation["segmentation"], height, width)
    area = decoded[1] if decoded is not None else int(mask_utils.area(rle))
    if area == 0:
        return None, ("empty mask", "has a segmentation that covers no pixel (a polygon of zero area, or an RLE "
                                    "mask without foreground)")
    completed = dict(annotation, iscrowd=int(annotation.get("iscrowd", 0)))
    completed["area"] = annotation["area"] if "area" in annotation else float(area)
    completed["bbox"] = bbox if bbox is not None else [float(v) for v in mask_utils.toBbox(rle)]
    return completed, None


def _segmentation_problem(segmentation, height: int, width: int,
                          total: int | None = None) -> tuple[str, str] | None:
    """(skip reason, what is wrong) for a segmentation pycocotools cannot decode safely, else None; ``total``
    is the pixels a compressed RLE string covers where already decoded (-1: malformed)."""
    if not segmentation:
        return "missing segmentation", "has no segmentation"
    if isinstance(segmentation, list):
        for polygon in segmentation:
            problem = polygon_problem(polygon, height, width)
            if problem is not None:
                return "invalid polygon", problem
        return None
    if not isinstance(segmentation, dict):
        return "invalid polygon", "has a segmentation that is neither a list of polygons nor an RLE mask"
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(s) for s in size)):
        return "invalid rle", "has an RLE mask without a [height, width] \"size\""
    if size != [height, width]:
        return "invalid rle", f"has an RLE mask of size {size[0]}x{size[1]} but its image is {height}x{width}"
    if isinstance(counts, list):
        total = sum(counts) if all(_is_int(c) and c >= 0 for c in counts) else None
    elif isinstance(counts, str):
        total = total if total is not None else compressed_rle_total(counts)
        total = None if total is None or total < 0 else total
    else:
        return "invalid rle", "has an RLE mask whose \"counts\" is neither a list nor a string"
    # pycocotools writes runs without bounds checks, so counts that overrun the image would corrupt memory.
    if total != height * width:
        return "invalid rle", (f"has RLE counts that cover {total} pixels instead of {height * width}" if total
                               is not None else "has malformed RLE counts")
    return None


def _mask_rle(segmentation, height: int, width: int) -> dict:
    """A checked segmentation as one compressed RLE, as pycocotools' ``annToRLE`` makes it."""
    if isinstance(segmentation, list):
        polygons = [[float(v) for v in polygon] for polygon in segmentation]
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": [height, width], "counts": segmentation["counts"].encode("ascii")}


def _image_problem(image: dict) -> str | None:
    file_name, height, width = image.get("file_name"), image.get("height"), image.get("width")
    if not isinstance(file_name, str) or not file_name:
        return "has no \"file_name\""
    if not (_is_int(height) and height > 0 and _is_int(width) and width > 0):
        return "needs positive integer \"height\" and \"width\""
    if height * width > MAX_IMAGE_PIXELS:
        return (f"is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} pycocotools can encode a mask of "
                f"(check its \"height\" and \"width\", or tile the image)")
    return None


#: The ids numpy and torch hold: a signed 64-bit integer (pycocotools and segcore's matching store them so).
ID_RANGE = (-(2 ** 63), 2 ** 63 - 1)


def _entry_id(entry, position: int, kind: str, path: Path) -> int:
    if not isinstance(entry, dict) or not _is_int(entry.get("id")):
        raise DatasetError(f"the {kind} at position {position} of {path} has no integer \"id\"; "
                           f"give it a unique integer id.")
    if not ID_RANGE[0] <= entry["id"] <= ID_RANGE[1]:
        raise DatasetError(f"the {kind} at position {position} of {path} has the id {entry['id']}, beyond the "
                           f"64-bit integers that evaluation holds ids in; renumber it below 2**63.")
    return entry["id"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_text(height: int, width: int, image_id: int | None) -> str:
    return f"its {width}x{height} image" + ("" if image_id is None else f" {image_id}")


def _box_text(bbox: list) -> str:
    return "[" + ", ".join(f"{v:g}" for v in bbox) + "]"


def short(value) -> str:
    """A JSON value as a message shows it: cut to 40 characters."""
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
