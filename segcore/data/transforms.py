"""Augmentation for instance-segmentation samples, with torchvision.transforms.v2.

A sample is ``(image, target)`` as :class:`segcore.data.coco.CocoSegmentation` builds it. v2 moves the
``tv_tensors`` together (image, ``boxes``, ``masks``) so no box or mask geometry is written here; the
per-instance tensors that v2 does not know about (labels, area, ...) are kept in step by handing them
to ``SanitizeBoundingBoxes`` through its ``labels_getter``.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

#: Target entries with one value per instance, removed together with their box and mask.
INSTANCE_FIELDS = ("labels", "area", "iscrowd", "occlusion", "annotation_ids")


def instance_fields(sample) -> tuple[torch.Tensor, ...]:
    """``labels_getter`` for ``SanitizeBoundingBoxes``: every (N,) per-instance tensor of the target.

    ``SanitizeBoundingBoxes`` filters each returned tensor with the same keep-mask as the boxes (and the
    (N, H, W) masks, which it finds by itself). A module-level function rather than a lambda, so that the
    transform pickles into ``DataLoader`` workers started with spawn.

    Args:
        sample: ``(image, target)`` or the target dict alone.
    """
    target = sample[1] if isinstance(sample, (tuple, list)) else sample
    return tuple(target[key] for key in INSTANCE_FIELDS if key in target)


class EmptyMasksToEmptyBoxes(v2.Transform):
    """Give an instance whose mask has lost every pixel a zero-size box, for ``SanitizeBoundingBoxes`` to drop.

    A box can keep a positive size after a crop while its mask has no pixel left, e.g. an L-shaped object
    whose visible corner is the empty part of its box. Sanitizing looks at boxes only, so such instances
    are marked here and removed there, with all their fields, in one place.
    """

    def forward(self, *inputs):
        image, target = inputs if len(inputs) > 1 else inputs[0]
        if "masks" not in target or "boxes" not in target:
            return image, target
        empty = ~target["masks"].flatten(1).bool().any(dim=1)
        if empty.any():
            boxes = target["boxes"].as_subclass(torch.Tensor).clone()
            boxes[empty] = 0.0
            target = {**target, "boxes": tv_tensors.wrap(boxes, like=target["boxes"])}
        return image, target


def train_transforms(*, hflip: float = 0.5, scale_range: tuple[float, float] | None = (0.75, 1.25),
                     photometric: bool = True) -> v2.Transform:
    """Random flip, scale jitter and colour jitter; image float32 [0, 1], instances sanitized.

    Output size equals input size, so images of one size batch together.

    Args:
        hflip: probability of a horizontal flip (0 for none).
        scale_range: zoom factors drawn uniformly per image (< 1 zooms out, > 1 zooms in); None for none.
        photometric: whether to jitter brightness, contrast, saturation and hue.

    Returns:
        A transform ``(image (3, H, W) uint8, target) -> (image (3, H, W) float32, target)``. Instances
        whose box becomes smaller than a pixel or whose mask becomes empty are removed from ``boxes``,
        ``masks`` and every entry of :data:`INSTANCE_FIELDS` alike.
    """
    steps: list[v2.Transform] = []
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if scale_range is not None:
        low, high = scale_range
        # Scale jitter as one affine zoom about the image centre plus a shift, instead of resize-then-crop:
        # it keeps each image's own size (resize + RandomCrop needs one crop size fixed for every image) and
        # zooming out pads with black the way RandomCrop(pad_if_needed) would. The shift, up to half the
        # zoom's change in size, lets a zoomed-in window reach the image borders and keeps a zoomed-out
        # image inside the frame. Boxes map exactly (no rotation); masks use nearest, the image bilinear.
        shift = max(high - 1.0, 1.0 - low) / 2
        steps.append(v2.RandomAffine(degrees=0.0, translate=(shift, shift), scale=(low, high),
                                     interpolation=v2.InterpolationMode.BILINEAR))
    if photometric:
        steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02))
    steps += [
        v2.ToDtype(torch.float32, scale=True),  # a single dtype converts images only; masks stay uint8
        EmptyMasksToEmptyBoxes(),
        v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=instance_fields),
    ]
    return v2.Compose(steps)


def eval_transforms() -> v2.Transform:
    """Image to float32 [0, 1]; the target is left exactly as the annotation file gives it.

    Nothing is sanitized: evaluation must see every ground-truth instance, degenerate boxes included.
    """
    return v2.Compose([v2.ToDtype(torch.float32, scale=True)])
