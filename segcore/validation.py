"""Validation while training: COCO mask and box AP by segcore's own evaluator, and the semantic scores.

The number that picks checkpoint.pt is the one a user compares models by: mask AP for an instance
model, mIoU for a semantic one (:data:`SELECTION_METRIC`). Validation can use a seeded subset of the split
(``--val-images K``) so that it costs little; the same K images are used at every validation of a run.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from segcore.coco_results import to_coco_results
from segcore.data import CocoSegmentation, collate
from segcore.metrics.coco import coco_metrics
from segcore.metrics.semantic import confusion_matrix, semantic_scores
from segcore.models.prediction import predict
from segcore.precision import autocast

#: The validation score (a key of :func:`validate`'s answer) that picks checkpoint.pt, by model kind.
SELECTION_METRIC = {"instance": "mask_AP", "semantic": "mIoU"}
#: The columns of validation.csv after epoch and iteration, in order.
COLUMNS = ("minutes", "images", "mask_AP", "box_AP", "mIoU", "pixel_accuracy")


def validation_indices(size: int, count: int | None, seed: int) -> list[int]:
    """The dataset indices validated: all ``size`` of them, or a seeded sample of ``count``, in order."""
    if count is None or count >= size:
        return list(range(size))
    return sorted(np.random.default_rng(seed).choice(size, count, replace=False).tolist())


def subset_ground_truth(coco, image_ids: list[int]):
    """A pycocotools ``COCO`` holding only ``image_ids`` and their annotations (all categories kept)."""
    from pycocotools.coco import COCO

    keep = set(image_ids)
    subset = COCO()
    subset.dataset = {
        **{k: v for k, v in coco.dataset.items() if k not in ("images", "annotations")},
        "images": [image for image in coco.dataset["images"] if image["id"] in keep],
        "annotations": [a for a in coco.dataset.get("annotations", []) if a["image_id"] in keep],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        subset.createIndex()
    return subset


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: CocoSegmentation, indices: list[int], device: torch.device, *,
             batch_size: int = 4, amp: bool = True) -> dict[str, float | int]:
    """Score ``model`` on the images ``indices`` of ``dataset`` (untransformed: eval transforms).

    Returns:
        {"images": K, "mask_AP", "box_AP": COCO AP at IoU .50:.95 (0 where nothing was found), "mIoU",
        "pixel_accuracy": of the semantic maps (painted instances or the semantic model's label maps)}.
    """
    num_classes = len(dataset.class_names) + 1
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    results: list[dict] = []
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, collate_fn=collate)
    position = 0
    for images, targets in loader:
        with autocast(device, amp):
            predictions = predict(model, [image.to(device) for image in images])
        for prediction, target in zip(predictions, targets):
            prediction = prediction.to("cpu")
            image_id = dataset.image_ids[indices[position]]
            position += 1
            results.extend(to_coco_results(prediction, image_id, dataset.category_ids))
            matrix += confusion_matrix(prediction.semantic.numpy(), target["semantic"].numpy(), num_classes)
    truth = subset_ground_truth(dataset.coco, [dataset.image_ids[i] for i in indices])
    # AP is None only without ground truth to find; a model then has nothing to be credited for
    mask_ap = coco_metrics(truth, results, "segm")["AP"]
    box_ap = coco_metrics(truth, results, "bbox")["AP"]
    semantic = semantic_scores(matrix)
    return {"images": len(indices), "mask_AP": mask_ap or 0.0, "box_AP": box_ap or 0.0,
            "mIoU": semantic["mIoU"], "pixel_accuracy": semantic["pixel_accuracy"]}
