"""Read a COCO-layout dataset folder into (image, target) samples.

The folder layout is a contract shared with the built-in generator and with COCO downloads::

    ROOT/annotations/instances_<split>.json     COCO instances JSON (polygons or RLE; iscrowd honoured)
    ROOT/<split>/<file_name>                    the images named in that JSON

The JSON is checked when the dataset is built (cheap checks, no mask decoding) and masks are checked
when they are decoded, so a bad annotation is reported as one :class:`DatasetError` sentence naming the
file, the id and what to do, rather than a traceback from deep inside pycocotools.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.ops import box_convert

from segcore.data.images import read_image
from segcore.errors import DatasetError
from segcore.label_maps import paint_instances, painting_order_by_area
from segcore.layout import annotation_path, image_folder
from segcore.rle import compressed_rle_total

#: reason -> (what is skipped, phrase for one, phrase for many), for :meth:`CocoSegmentation.skipped_summary`.
SKIP_REASONS = {
    "missing image file": ("image", "with a missing file", "with missing files"),
    "unknown image id": ("annotation", "of an unknown image", "of unknown images"),
    "unknown category id": ("annotation", "of an unknown category", "of unknown categories"),
    "missing segmentation": ("annotation", "without a segmentation", "without segmentations"),
    "invalid polygon": ("annotation", "with an invalid polygon", "with invalid polygons"),
    "invalid rle": ("annotation", "with a malformed RLE mask", "with malformed RLE masks"),
    "invalid bbox": ("annotation", "with a malformed bbox", "with malformed bboxes"),
    "empty mask": ("annotation", "with an empty mask", "with empty masks"),
}



class CocoSegmentation(torch.utils.data.Dataset):
    """Instance-segmentation samples of one split of a COCO-layout folder.

    A sample is ``(image, target)``: image ``tv_tensors.Image`` uint8 (3, H, W) RGB (float32 in [0, 1]
    after the segcore transforms), and target a dict of N instances, crowd regions included::

        boxes           tv_tensors.BoundingBoxes (N, 4) float32 XYXY, canvas_size (H, W)
        labels          (N,) int64 in 1..K, label i + 1 <-> class_names[i]
        masks           tv_tensors.Mask (N, H, W) uint8
        area            (N,) float32, the JSON's area (not updated by transforms)
        iscrowd         (N,) int64
        occlusion       (N,) float32, NaN where the JSON has none
        annotation_ids  (N,) int64
        image_id        int
        semantic        (H, W) int64 label map painted from the masks after the transforms, smaller in front

    Images without annotations are kept (N = 0). With ``skip_invalid`` bad annotations and images whose
    file is missing are left out and counted in ``skipped``; ``coco`` then holds only what was kept.
    """

    def __init__(self, root: str | os.PathLike, split: str, *, transforms=None, skip_invalid: bool = False):
        self.root = Path(root)
        self.split = split
        self.annotation_file = annotation_path(root, split)
        self.image_dir = image_folder(self.root, split)
        self.transforms = transforms
        self.skip_invalid = skip_invalid
        self.skipped: Counter = Counter()
        # Annotations found bad when decoded; remembered so that each is counted once, not once an epoch.
        self._rejected_when_decoded: set[int] = set()

        data = _load_annotation_file(self.annotation_file)
        categories = _check_categories(data["categories"], self.annotation_file)
        self.category_ids: list[int] = sorted(categories)
        self.class_names: list[str] = [categories[i]["name"] for i in self.category_ids]
        self._labels = {category_id: label for label, category_id in enumerate(self.category_ids, start=1)}

        images, missing = self._check_images(data["images"])
        annotations = self._check_annotations(data["annotations"], images, missing)
        self.image_ids: list[int] = sorted(images)
        dataset = dict(data, images=[images[i] for i in self.image_ids], annotations=annotations)
        self.coco = COCO()
        self.coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            self.coco.createIndex()

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict]:
        """The image (3, H, W) and its target, transformed, with ``semantic`` painted afterwards."""
        image_id = self.image_ids[index]
        target = self._instances(image_id)
        image = self._read_image(image_id)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        target["semantic"] = _paint(target["masks"], target["labels"])
        return image, target

    def target(self, index: int) -> dict:
        """The target of image ``index`` from the JSON alone: no image is read and no transform applied."""
        target = self._instances(self.image_ids[index])
        target["semantic"] = _paint(target["masks"], target["labels"])
        return target

    def label_of(self, category_id: int) -> int:
        """The contiguous label (1..K) of a COCO category id."""
        if category_id not in self._labels:
            raise DatasetError(f"category {category_id} is not in {self.annotation_file}; "
                               f"use one of the category ids {self.category_ids}.")
        return self._labels[category_id]

    def skipped_summary(self) -> str:
        """One line such as "skipped 3 annotations with empty masks, 1 image with a missing file"."""
        if not self.skipped:
            return "skipped nothing"
        parts = []
        for reason, count in self.skipped.most_common():
            kind, one, many = SKIP_REASONS[reason]
            parts.append(f"{count} {kind} {one}" if count == 1 else f"{count} {kind}s {many}")
        return "skipped " + ", ".join(parts)

    # ---- checks at construction: structure only, no mask decoding ----

    def _reject(self, reason: str, sentence: str) -> None:
        """Skip and count when ``skip_invalid``, else raise ``sentence`` (a complete user message)."""
        if not self.skip_invalid:
            raise DatasetError(sentence)
        self.skipped[reason] += 1

    def _reject_annotation(self, annotation_id: int, reason: str, problem: str) -> None:
        self._reject(reason, f"annotation {annotation_id} in {self.annotation_file} {problem}; fix or remove it, "
                             f"or pass --skip-invalid to skip such annotations.")

    def _check_images(self, entries: list) -> tuple[dict[int, dict], set[int]]:
        """Image entries by id, and the ids of those left out because their file is missing."""
        images: dict[int, dict] = {}
        missing: set[int] = set()
        for position, image in enumerate(entries):
            image_id = _entry_id(image, position, "image", self.annotation_file)
            if image_id in images or image_id in missing:
                raise DatasetError(f"image id {image_id} appears twice in {self.annotation_file}; "
                                   f"give every image its own id.")
            file_name = image.get("file_name")
            height, width = image.get("height"), image.get("width")
            if not isinstance(file_name, str) or not _is_positive_int(height) or not _is_positive_int(width):
                raise DatasetError(f"image {image_id} in {self.annotation_file} needs a \"file_name\" and positive "
                                   f"integer \"height\" and \"width\"; add them to its entry.")
            path = self.image_dir / file_name
            if not os.path.exists(path):
                self._reject("missing image file", f"image {image_id} of {self.annotation_file} has no file at "
                             f"{path} (the layout is ROOT/<split>/<file_name>); put the image there, or pass "
                             f"--skip-invalid to skip images without files.")
                missing.add(image_id)
                continue
            images[image_id] = image
        return images, missing

    def _check_annotations(self, entries: list, images: dict[int, dict], missing: set[int]) -> list[dict]:
        """The annotations to keep, each of a kept image and a known category, with a well-formed segmentation."""
        kept, seen = [], set()
        for position, annotation in enumerate(entries):
            annotation_id = _entry_id(annotation, position, "annotation", self.annotation_file)
            if annotation_id in seen:
                raise DatasetError(f"annotation id {annotation_id} appears twice in {self.annotation_file}; "
                                   f"give every annotation its own id.")
            seen.add(annotation_id)
            image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
            if image_id in missing:
                continue  # counted once, as its image
            if image_id not in images:
                self._reject_annotation(annotation_id, "unknown image id",
                                        f"refers to image {image_id!r}, which is not in its \"images\" list")
                continue
            if category_id not in self._labels:
                self._reject_annotation(annotation_id, "unknown category id",
                                        f"refers to category {category_id!r}, which is not in its \"categories\" list")
                continue
            image = images[image_id]
            problem = (_segmentation_problem(annotation.get("segmentation"), image["height"], image["width"])
                       or _bbox_problem(annotation))
            if problem is not None:
                self._reject_annotation(annotation_id, *problem)
                continue
            kept.append(annotation)
        return kept

    # ---- samples ----

    def _instances(self, image_id: int) -> dict:
        """Target of one image before transforms, without ``semantic``; checks that each mask has pixels."""
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        annotations, masks = [], []
        for annotation in self.coco.imgToAnns.get(image_id, []):
            if annotation["id"] in self._rejected_when_decoded:
                continue
            try:
                mask = self.coco.annToMask(annotation)
                problem = None if mask.any() else ("empty mask", "has a segmentation that covers no pixel")
            except (TypeError, ValueError):  # e.g. a polygon coordinate that is not a number
                problem = ("invalid polygon", "has a polygon coordinate that is not a number")
            if problem is not None:
                self._reject_annotation(annotation["id"], *problem)
                self._rejected_when_decoded.add(annotation["id"])
                continue
            annotations.append(annotation)
            masks.append(mask)

        xywh = [annotation.get("bbox") or _bbox_of(mask) for annotation, mask in zip(annotations, masks)]
        boxes = box_convert(torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4), "xywh", "xyxy")
        stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=np.uint8)
        return {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self._labels[a["category_id"]] for a in annotations], dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(stacked)),
            "area": torch.tensor([a["area"] if "area" in a else float(m.sum()) for a, m in zip(annotations, masks)],
                                 dtype=torch.float32),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in annotations], dtype=torch.int64),
            "occlusion": torch.tensor([_number_or_nan(a.get("occlusion")) for a in annotations], dtype=torch.float32),
            "annotation_ids": torch.tensor([a["id"] for a in annotations], dtype=torch.int64),
            "image_id": image_id,
        }

    def _read_image(self, image_id: int) -> tv_tensors.Image:
        """The image file as uint8 (3, H, W) RGB, upright as its EXIF orientation says."""
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        image = read_image(path, what=f"image {image_id} of {self.annotation_file}")
        height, width = image.shape[-2:]
        if (width, height) != (info["width"], info["height"]):
            raise DatasetError(f"image {image_id} at {path} is {width}x{height} pixels but "
                               f"{self.annotation_file} says {info['width']}x{info['height']}; fix its width and "
                               f"height there, or replace the image.")
        return tv_tensors.Image(image)


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """``DataLoader`` collate function: images and targets as two lists, as detection models take them."""
    if not batch:
        return [], []
    images, targets = zip(*batch)
    return list(images), list(targets)


def checksum(root: str | os.PathLike) -> str:
    """sha256 hex of a dataset folder: the annotation files' bytes and the images' relative paths and sizes.

    Image bytes are not read, so this stays cheap on large folders; a re-encoded image of the very same
    size goes unnoticed. Hidden files (``.DS_Store``) and files directly in ``root`` are ignored.
    """
    root = Path(root)
    annotation_dir = root / "annotations"
    annotation_files = sorted(annotation_dir.glob("*.json"))
    if not annotation_files:
        raise DatasetError(f"{annotation_dir} holds no annotation files; a dataset folder holds "
                           f"ROOT/annotations/instances_<split>.json and the images in ROOT/<split>/.")
    digest = hashlib.sha256()
    for path in annotation_files:
        # Length-prefixed fields so that no two different folders feed the same byte stream.
        digest.update(f"annotation\0{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    images = []
    for directory, subdirectories, file_names in os.walk(root):
        directory = Path(directory)
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(".")
                                   and not (directory == root and d == "annotations"))
        if directory == root:
            continue
        for name in file_names:
            if not name.startswith("."):
                path = directory / name
                images.append((path.relative_to(root).as_posix(), path.stat().st_size))
    for relative, size in sorted(images):
        digest.update(f"image\0{relative}\0{size}\0".encode())
    return digest.hexdigest()


def read_categories(root: str | os.PathLike, split: str) -> list[str]:
    """Class names of a split (label i + 1 <-> name i), in category id order, without decoding masks."""
    path = annotation_path(root, split)
    categories = _check_categories(_load_annotation_file(path)["categories"], path)
    return [categories[i]["name"] for i in sorted(categories)]


# ---- helpers ----

def _load_annotation_file(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"no annotation file at {path}; a dataset folder holds "
                           f"ROOT/annotations/instances_<split>.json and the images in ROOT/<split>/.")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                           f"fix or regenerate the file.") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not UTF-8 text; it should be a COCO instances JSON file.") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a JSON {type(data).__name__}, not an object; it should be a COCO "
                           f"instances file with \"images\", \"annotations\" and \"categories\".")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path} has no \"{key}\" list; a COCO instances file needs \"images\", "
                               f"\"annotations\" and \"categories\".")
    return data


def _check_categories(entries: list, path: Path) -> dict[int, dict]:
    categories: dict[int, dict] = {}
    for position, category in enumerate(entries):
        category_id = _entry_id(category, position, "category", path)
        if category_id in categories:
            raise DatasetError(f"category id {category_id} appears twice in {path}; give every category its own id.")
        if not isinstance(category.get("name"), str):
            raise DatasetError(f"category {category_id} in {path} has no \"name\"; add one.")
        categories[category_id] = category
    return categories


def _entry_id(entry, position: int, kind: str, path: Path) -> int:
    if not isinstance(entry, dict) or not _is_int(entry.get("id")):
        raise DatasetError(f"the {kind} at position {position} of {path} has no integer \"id\"; "
                           f"give it a unique integer id.")
    return entry["id"]


def _segmentation_problem(segmentation, height: int, width: int) -> tuple[str, str] | None:
    """(skip reason, what is wrong) for a segmentation pycocotools cannot decode safely, else None."""
    if not segmentation:
        return "missing segmentation", "has no segmentation"
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list):
                return "invalid polygon", "has a polygon that is not a list of coordinates"
            if len(polygon) % 2:
                return "invalid polygon", f"has a polygon with an odd number of coordinates ({len(polygon)})"
            if len(polygon) < 6:
                return "invalid polygon", f"has a polygon with {len(polygon) // 2} points (at least 3 are needed)"
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
    elif isinstance(counts, (str, bytes)):
        total = compressed_rle_total(counts)
    else:
        return "invalid rle", "has an RLE mask whose \"counts\" is neither a list nor a string"
    # pycocotools writes runs without bounds checks, so counts that overrun the image would corrupt memory.
    if total != height * width:
        return "invalid rle", (f"has RLE counts that cover {total} pixels instead of {height * width}" if total
                               is not None else "has malformed RLE counts")
    return None


def _bbox_problem(annotation: dict) -> tuple[str, str] | None:
    if "bbox" not in annotation:
        return None
    bbox = annotation["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
        return "invalid bbox", "has a \"bbox\" that is not four numbers [x, y, width, height]"
    return None


def _bbox_of(mask: np.ndarray) -> list[float]:
    """COCO [x, y, w, h] of a (H, W) mask, as pycocotools computes it."""
    return mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask))).tolist()


def _paint(masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W) masks, (N,) labels -> (H, W) int64 label map, smaller objects in front."""
    masks, labels = masks.as_subclass(torch.Tensor).cpu().numpy(), labels.cpu().numpy()
    return torch.from_numpy(paint_instances(masks, labels, order=painting_order_by_area(masks)))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value) -> bool:
    return _is_int(value) and value > 0


def _number_or_nan(value) -> float:
    """An optional numeric field (such as ``occlusion``) as a float, NaN where absent or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")
