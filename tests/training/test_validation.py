"""Validation while training: the subset it scores, and COCO AP and mIoU from segcore's own evaluator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcore.data import CocoSegmentation
from segcore.evaluation.accumulator import subset_ground_truth
from segcore.training.validation import validate, validation_indices


class Oracle(nn.Module):
    """A stand-in model that answers each image's ground truth (or nothing), in the order it is asked."""

    def __init__(self, dataset: CocoSegmentation, indices: list[int], *, empty: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # so that the model has a device
        self.targets = [dataset.target(i) for i in indices]
        self.empty = empty

    def forward(self, images):
        outputs = []
        for image in images:
            target = self.targets.pop(0)
            keep = slice(0, 0) if self.empty else slice(None)
            masks = target["masks"][keep].float()[:, None]
            outputs.append({"boxes": target["boxes"][keep].float(), "labels": target["labels"][keep],
                            "scores": torch.ones(len(masks)), "masks": masks})
        return outputs


def test_the_subset_is_seeded_sorted_and_the_whole_split_by_default():
    assert validation_indices(10, None, seed=0) == list(range(10))
    assert validation_indices(10, 20, seed=0) == list(range(10))
    subset = validation_indices(10, 4, seed=3)
    assert len(subset) == 4 and subset == sorted(subset) and len(set(subset)) == 4
    assert subset == validation_indices(10, 4, seed=3) and subset != validation_indices(10, 4, seed=4)


def test_the_subset_ground_truth_holds_only_its_images(shapes):
    dataset = CocoSegmentation(shapes, "val")
    ids = dataset.image_ids[1:3]
    truth = subset_ground_truth(dataset.coco, ids)
    assert sorted(truth.getImgIds()) == sorted(ids)
    assert {a["image_id"] for a in truth.dataset["annotations"]} <= set(ids)
    assert len(truth.getAnnIds()) == len(dataset.coco.getAnnIds(imgIds=ids))
    assert truth.getCatIds() == dataset.coco.getCatIds()


def test_a_perfect_model_scores_one_and_an_empty_one_zero(shapes):
    dataset = CocoSegmentation(shapes, "val")
    indices = validation_indices(len(dataset), 3, seed=0)
    perfect = validate(Oracle(dataset, indices), dataset, indices, torch.device("cpu"), batch_size=2)
    assert perfect["images"] == 3
    assert perfect["mask_AP"] == pytest.approx(1.0) and perfect["box_AP"] == pytest.approx(1.0)
    assert perfect["mIoU"] == pytest.approx(1.0) and perfect["pixel_accuracy"] == pytest.approx(1.0)
    empty = validate(Oracle(dataset, indices, empty=True), dataset, indices, torch.device("cpu"), batch_size=2)
    assert empty["mask_AP"] == 0.0 and empty["box_AP"] == 0.0 and empty["mIoU"] < 1.0
