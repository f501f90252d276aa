"""Read a COCO-layout dataset folder into (image, target) samples.

The folder layout is a contract shared with the built-in generator and with COCO downloads::

    ROOT/annotations/instances_<split>.json     COCO instances JSON (polygons or RLE; iscrowd honoured)
    ROOT/<split>/<file_name>                    the images named in that JSON

The JSON is checked when the dataset is built, by :mod:`segcore.coco.instances` (the same checks as a ground
truth given to ``segcore eval --gt``), so a bad annotation is reported as one :class:`DatasetError`
sentence naming the file, the id and what to do, before training or evaluation starts, rather than as a
traceback from deep inside pycocotools or a DataLoader worker.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.ops import box_convert

from segcore.coco.instances import check_categories, load_json, read_instances, skipped_summary
from segcore.data.images import read_image
from segcore.data.label_maps import paint_instances, painting_order_by_area
from segcore.data.layout import annotation_path, image_folder
from segcore.errors import DatasetError


class CocoSegmentation(torch.utils.data.Dataset):
    """Instance-segmentation samples of one split of a COCO-layout folder.

    A sample is ``(image, target)``: image ``tv_tensors.Image`` uint8 (3, H, W) RGB (float32 in [0, 1]
    after the segcore transforms), and target a dict of N instances, crowd regions included::

        boxes           tv_tensors.BoundingBoxes (N, 4) float32 XYXY, canvas_size (H, W): the JSON's bbox
                        clipped to the image, else the mask's box
        labels          (N,) int64 in 1..K, label i + 1 <-> class_names[i]
        masks           tv_tensors.Mask (N, H, W) uint8
        area            (N,) float32, the JSON's area, else the mask's pixels (not updated by transforms)
        iscrowd         (N,) int64
        occlusion       (N,) float32, NaN where the JSON has none
        annotation_ids  (N,) int64
        image_id        int
        semantic        (H, W) int64 label map painted from the masks after the transforms, smaller in front

    Images without annotations are kept (N = 0). With ``skip_invalid`` bad annotations and images with a
    bad entry or a missing file are left out and counted by reason in ``skipped`` (see
    :data:`segcore.coco.instances.SKIP_REASONS`); ``coco`` then holds only what was kept.
    """

    def __init__(self, root: str | os.PathLike, split: str, *, transforms=None, skip_invalid: bool = False):
        self.root = Path(root)
        self.split = split
        self.annotation_file = annotation_path(root, split)
        self.image_dir = image_folder(self.root, split)
        self.transforms = transforms
        self.skip_invalid = skip_invalid

        # every mask is checked here, so a sample is never refused halfway through an epoch
        checked = read_instances(self.annotation_file, image_dir=self.image_dir, skip_invalid=skip_invalid)
        self.skipped = checked.skipped
        self.category_ids: list[int] = sorted(checked.categories)
        self.class_names: list[str] = [checked.categories[i]["name"] for i in self.category_ids]
        self._labels = {category_id: label for label, category_id in enumerate(self.category_ids, start=1)}
        self.image_ids: list[int] = [image["id"] for image in checked.dataset["images"]]
        self.coco = checked.coco()

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
        return skipped_summary(self.skipped)

    # ---- samples ----

    def _instances(self, image_id: int) -> dict:
        """Target of one image before transforms, without ``semantic``. The annotations were checked and
        completed (bbox clipped to the image, area and iscrowd filled in) by :mod:`segcore.coco.instances`."""
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        annotations = self.coco.imgToAnns.get(image_id, [])
        masks = [self.coco.annToMask(annotation) for annotation in annotations]

        xywh = [annotation["bbox"] for annotation in annotations]
        boxes = box_convert(torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4), "xywh", "xyxy")
        stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=np.uint8)
        return {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self._labels[a["category_id"]] for a in annotations], dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(stacked)),
            "area": torch.tensor([a["area"] for a in annotations], dtype=torch.float32),
            "iscrowd": torch.tensor([a["iscrowd"] for a in annotations], dtype=torch.int64),
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
    categories = check_categories(load_json(path)["categories"], path)
    return [categories[i]["name"] for i in sorted(categories)]


# ---- helpers ----

def _paint(masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W) masks, (N,) labels -> (H, W) int64 label map, smaller objects in front."""
    masks, labels = masks.as_subclass(torch.Tensor).cpu().numpy(), labels.cpu().numpy()
    return torch.from_numpy(paint_instances(masks, labels, order=painting_order_by_area(masks)))


def _number_or_nan(value) -> float:
    """An optional numeric field (such as ``occlusion``) as a float, NaN where absent or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")
