"""Validation while training: COCO mask and box AP and the semantic scores, by the accumulator
``segcore eval`` uses (:class:`segcore.evaluation.accumulator.Accumulator`).

The number that picks checkpoint.pt is the one a user compares models by: mask AP for an instance
model, mIoU for a semantic one (:data:`SELECTION_METRIC`). Validation can use a seeded subset of the split
(``--val-images K``) so that it costs little; the same K images are used at every validation of a run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from segcore.data import CocoSegmentation, collate
from segcore.evaluation.accumulator import Accumulator
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


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: CocoSegmentation, indices: list[int], device: torch.device, *,
             batch_size: int = 4, amp: bool = True) -> dict[str, float | int]:
    """Score ``model`` on the images ``indices`` of ``dataset`` (untransformed: eval transforms).

    Returns:
        {"images": K, "mask_AP", "box_AP": COCO AP at IoU .50:.95 (0 where nothing was found), "mIoU",
        "pixel_accuracy": of the semantic maps (painted instances or the semantic model's label maps)}.
    """
    accumulator = Accumulator(dataset.category_ids)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, collate_fn=collate)
    position = 0
    for images, targets in loader:
        with autocast(device, amp):
            predictions = predict(model, [image.to(device) for image in images])
        for prediction, target in zip(predictions, targets):
            accumulator.process(dataset.image_ids[indices[position]], prediction.to("cpu"), target["semantic"].numpy())
            position += 1
    return accumulator.evaluate(dataset.coco)
