"""Train and eval transforms keep image, boxes, masks and every per-instance field in step."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from segcore.data import eval_transforms, train_transforms
from segcore.data.transforms import INSTANCE_FIELDS

# Three 64x64 objects (x0, y0, x1, y1), each image pixel inside object k having the value 60 * label.
OBJECTS = [(4, 4, 40, 30), (30, 20, 50, 60), (50, 2, 62, 12)]


def coco_boxes(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes of (N, H, W) masks that end after the last pixel, as COCO boxes do."""
    return masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])


def sample(objects=OBJECTS) -> tuple[tv_tensors.Image, dict]:
    """A (3, 64, 64) uint8 image and a target whose fields all encode the instance's label k (1..N)."""
    masks = torch.zeros(len(objects), 64, 64, dtype=torch.uint8)
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(objects):
        masks[k, y0:y1, x0:x1] = 1
        image[:, y0:y1, x0:x1] = 60 * (k + 1)
    labels = torch.arange(1, len(objects) + 1)
    return tv_tensors.Image(image), {
        "boxes": tv_tensors.BoundingBoxes(coco_boxes(masks).reshape(-1, 4), format="XYXY", canvas_size=(64, 64)),
        "masks": tv_tensors.Mask(masks),
        "labels": labels,
        "area": 1000.0 * labels,
        "iscrowd": labels % 2,
        "occlusion": labels / 10,
        "annotation_ids": 100 + labels,
        "image_id": 7,
    }


def assert_aligned(image: torch.Tensor, target: dict) -> None:
    """Every kept instance: fields agree on its label, its box bounds its mask, its mask covers its colour."""
    labels = target["labels"]
    assert all(target[key].shape == labels.shape for key in INSTANCE_FIELDS)
    assert torch.equal(target["annotation_ids"], 100 + labels)
    assert torch.equal(target["area"], 1000.0 * labels)
    assert torch.equal(target["iscrowd"], labels % 2)
    assert torch.allclose(target["occlusion"], labels / 10)
    assert target["masks"].shape[0] == target["boxes"].shape[0] == labels.shape[0]
    if labels.numel():
        assert torch.allclose(target["boxes"].as_subclass(torch.Tensor), coco_boxes(target["masks"]), atol=1.0)
    for mask, label in zip(target["masks"], labels):
        assert image[0][mask.bool()].median() * 255 == pytest.approx(60 * label.item(), abs=1)


def test_flip_moves_boxes_with_masks():
    image, target = train_transforms(hflip=1.0, scale_range=None, photometric=False)(*sample())
    assert_aligned(image, target)
    assert torch.equal(target["masks"], sample()[1]["masks"].flip(-1))
    assert torch.equal(target["boxes"].as_subclass(torch.Tensor), coco_boxes(target["masks"]))


@pytest.mark.parametrize("seed", range(8))
def test_scale_jitter_keeps_instances_aligned(seed):
    torch.manual_seed(seed)
    image, target = train_transforms(scale_range=(0.5, 2.0), photometric=False)(*sample())
    assert image.shape == (3, 64, 64)
    assert_aligned(image, target)


def test_output_image_is_float_in_unit_range_with_the_same_shape():
    torch.manual_seed(0)
    image, target = train_transforms()(*sample())
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["masks"].dtype == torch.uint8 and target["image_id"] == 7


def test_image_without_objects_passes_through():
    torch.manual_seed(0)
    image, target = train_transforms()(*sample(objects=[]))
    assert image.shape == (3, 64, 64)
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 64, 64)
    assert all(target[key].shape == (0,) for key in INSTANCE_FIELDS)


def test_degenerate_box_is_removed_with_all_its_fields():
    image, target = sample()
    boxes = target["boxes"].as_subclass(torch.Tensor).clone()
    boxes[1, 2] = boxes[1, 0] + 0.5  # thinner than a pixel
    target["boxes"] = tv_tensors.wrap(boxes, like=target["boxes"])
    image, target = train_transforms(hflip=0.0, scale_range=None, photometric=False)(image, target)
    assert target["labels"].tolist() == [1, 3]
    assert_aligned(image, target)


def test_instance_whose_mask_is_empty_is_removed_though_its_box_is_not():
    image, target = sample()
    target["masks"][0] = 0  # e.g. an L-shaped object cropped to the empty corner of its box
    image, target = train_transforms(hflip=0.0, scale_range=None, photometric=False)(image, target)
    assert target["labels"].tolist() == [2, 3]
    assert_aligned(image, target)


def test_eval_transforms_change_only_the_image_dtype():
    image, target = eval_transforms()(*sample())
    assert image.dtype == torch.float32 and image.max() <= 1.0
    expected = sample()[1]
    assert all(torch.equal(target[key], expected[key]) for key in ("boxes", "masks", *INSTANCE_FIELDS))
