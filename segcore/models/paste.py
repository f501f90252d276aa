"""Pasting 28×28 RoI masks into the image, as torchvision's ``paste_masks_in_image`` does, without its
per-mask tensor indexing.

torchvision reads each box's four coordinates from a tensor one element at a time and allocates and
stacks one full-image tensor per mask: at 100 detections on the CPU that bookkeeping costs more than the
resizing itself. Here the boxes become Python integers once and every mask is resized into one
preallocated output. The arithmetic (padding, box expansion, integer rounding, bilinear resizing with
``align_corners=False``) is torchvision's, so the result is identical, which a test checks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_shape: tuple[int, int],
                padding: int = 1) -> torch.Tensor:
    """``(N, 1, M, M)`` mask probabilities and ``(N, 4)`` XYXY boxes in pixels -> ``(N, 1, H, W)``, each mask
    resized to its box and zero elsewhere."""
    masks, scale = expand_masks(masks, padding=padding)
    boxes = expand_boxes(boxes, scale).to(dtype=torch.int64).tolist()
    height, width = image_shape
    out = masks.new_zeros((len(boxes), 1, height, width))
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        resized = F.interpolate(masks[index : index + 1], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        left, right, top, bottom = max(x0, 0), min(x1 + 1, width), max(y0, 0), min(y1 + 1, height)
        if right > left and bottom > top:
            out[index, 0, top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0]
    return out
