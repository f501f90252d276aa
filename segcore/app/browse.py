"""Per-image browsing of an eval folder: which images to look at, and one image's ground truth against
its predictions, each instance coloured by its matching outcome (found, wrong, missed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from segcore.data.images import read_image
from segcore.data.layout import lies_within
from segcore.errors import SegcoreError
from segcore.metrics.matching import FALSE_POSITIVE_TYPES
from segcore.runs import DatasetSource

#: per_instance.csv error types grouped as the filters offer them.
ERROR_FILTERS = ("true_positive", *FALSE_POSITIVE_TYPES, "missed")


def filter_images(per_image, per_instance, *, classes: list[str] | None = None,
                  error_types: list[str] | None = None, area_buckets: list[str] | None = None,
                  occlusion: tuple[float, float] | None = None):
    """The per-image rows of images with at least one instance passing every given filter.

    Args:
        per_image, per_instance: the eval folder's tables (pandas DataFrames).
        classes: category names; error_types: per_instance.csv error types; area_buckets: small, medium,
            large; occlusion: an inclusive (low, high) range of ground-truth occlusion.

    Returns:
        the rows of ``per_image`` kept, in their order; all of them when no filter is given.
    """
    if not any([classes, error_types, area_buckets, occlusion]) or per_instance.empty:
        return per_image
    keep = np.ones(len(per_instance), dtype=bool)
    if classes:
        keep &= per_instance["category"].isin(classes).to_numpy()
    if error_types:
        keep &= per_instance["error_type"].isin(error_types).to_numpy()
    if area_buckets:
        keep &= per_instance["area_bucket"].isin(area_buckets).to_numpy()
    if occlusion:
        values = per_instance["occlusion"].to_numpy(dtype=np.float64)
        keep &= (values >= occlusion[0]) & (values <= occlusion[1])
    images = set(per_instance.loc[keep, "image_id"].tolist())
    return per_image[per_image["image_id"].isin(images)]


@dataclass
class ImageView:
    """One image's ground truth and predictions with their matching outcomes.

    Attributes:
        image: (3, H, W) uint8, or None when the image file is not available.
        size: (H, W).
        gt_masks: (G, H, W) bool of the non-crowd ground truths; gt_classes, gt_outcomes, gt_labels: G each.
        pred_masks: (P, H, W) bool of the predictions at or above the score threshold; pred_outcomes,
            pred_labels: P each.
        instances: the per_instance.csv rows of the image.
    """

    image: torch.Tensor | None
    size: tuple[int, int]
    file_name: str
    gt_masks: torch.Tensor
    gt_classes: list[str]
    gt_outcomes: list[str]
    gt_labels: list[str]
    pred_masks: torch.Tensor
    pred_outcomes: list[str]
    pred_labels: list[str]
    instances: Any


def _decode(rles: list[dict], size: tuple[int, int]) -> torch.Tensor:
    if not rles:
        return torch.zeros((0, *size), dtype=torch.bool)
    return torch.from_numpy(np.moveaxis(mask_utils.decode(rles), -1, 0).astype(bool))


def image_view(coco_gt, source: DatasetSource, image_id: int, predictions: list[dict], per_instance, *,
               score_threshold: float = 0.0) -> ImageView:
    """Everything needed to draw one image of an eval folder.

    Args:
        coco_gt: the pycocotools COCO of the ground truth.
        source: where the images are (:func:`segcore.runs.dataset_source`).
        image_id: the image.
        predictions: the eval folder's predictions.json entries (all images; pred_id indexes them).
        per_instance: the eval folder's per_instance.csv table.
        score_threshold: predictions scoring less are not drawn.
    """
    info = coco_gt.imgs.get(image_id)
    if info is None:
        raise SegcoreError(f"image {image_id} is not in {source.annotations}; pick an image of that split.")
    size = (int(info["height"]), int(info["width"]))
    image = None
    path = None if source.images is None else source.images / str(info["file_name"])
    # a file_name is the ground truth's word: one such as "../../x.png" is not read, as any image not in the folder
    if path is not None and lies_within(path, source.images) and path.is_file():
        image = read_image(path, what=f"image {image_id}")
    rows = per_instance[per_instance["image_id"] == image_id]
    beyond = rows["pred_id"].dropna()
    beyond = beyond[(beyond < 0) | (beyond >= len(predictions))]
    if len(beyond):
        raise SegcoreError(f"per_instance.csv names prediction {int(beyond.iloc[0])} of image {image_id}, but "
                           f"predictions.json holds {len(predictions)}; evaluate the run again.")
    gt_rows = {int(r.gt_id): r for r in rows.itertuples() if not np.isnan(r.gt_id) and r.error_type in (
        "true_positive", "missed")}
    gts = [a for a in coco_gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
    gt_outcomes, gt_labels = [], []
    for ann in gts:
        row = gt_rows.get(ann["id"])
        outcome = "missed" if row is None or row.error_type == "missed" else "true_positive"
        name = coco_gt.cats[ann["category_id"]]["name"]
        gt_outcomes.append(outcome)
        gt_labels.append(f"{name} IoU {row.iou:.2f}" if outcome == "true_positive" else f"{name} missed")
    pred_rows = [r for r in rows.itertuples() if not np.isnan(r.pred_id)
                 and predictions[int(r.pred_id)]["score"] >= score_threshold and "segmentation" in
                 predictions[int(r.pred_id)]]
    pred_outcomes = [r.error_type for r in pred_rows]
    pred_labels = [f"{r.category} {r.score:.2f} " + ("IoU " + f"{r.iou:.2f}" if r.error_type == "true_positive"
                                                     else r.error_type) for r in pred_rows]
    return ImageView(
        image=image, size=size, file_name=info["file_name"],
        gt_masks=_decode([coco_gt.annToRLE(a) for a in gts], size),
        gt_classes=[coco_gt.cats[a["category_id"]]["name"] for a in gts], gt_outcomes=gt_outcomes, gt_labels=gt_labels,
        pred_masks=_decode([predictions[int(r.pred_id)]["segmentation"] for r in pred_rows], size),
        pred_outcomes=pred_outcomes, pred_labels=pred_labels, instances=rows,
    )


def blank_canvas(size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) uint8 mid-grey, to draw on when the image file is not available."""
    return torch.full((3, *size), 96, dtype=torch.uint8)


def ground_truth_of_file(coco_gt, file_name: str) -> tuple[torch.Tensor, list[str]] | None:
    """The non-crowd ground-truth masks (G, H, W) bool and class names of the image called ``file_name``, or
    None when the ground truth has no such image."""
    info = next((i for i in coco_gt.imgs.values() if i.get("file_name") == file_name), None)
    if info is None:
        return None
    gts = [a for a in coco_gt.imgToAnns.get(info["id"], []) if not a.get("iscrowd", 0)]
    size = (int(info["height"]), int(info["width"]))
    return _decode([coco_gt.annToRLE(a) for a in gts], size), [coco_gt.cats[a["category_id"]]["name"] for a in gts]


def file_names(per_image) -> dict[int, str]:
    """image id -> file name, from an eval folder's per_image.csv table."""
    return dict(zip(per_image["image_id"], per_image["file_name"]))
