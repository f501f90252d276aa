"""Pictures of predictions: masks, boxes and class names drawn over the image with torchvision.utils."""

from __future__ import annotations

import colorsys

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from segcore.models.prediction import Prediction


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """One distinct, stable RGB colour per class label 0..num_classes-1 (golden-ratio hue steps)."""
    colors = []
    for label in range(num_classes):
        hue = (label * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


def overlay(image: torch.Tensor, prediction: Prediction, class_names: list[str], *, score_threshold: float = 0.5,
            alpha: float = 0.5, boxes: bool = True) -> torch.Tensor:
    """The image with each instance's mask, box and "class score" label drawn over it.

    Args:
        image: (3, H, W) uint8.
        prediction: at the image's size.
        class_names: names of labels 1..K.
        score_threshold: instances scoring less are not drawn.
        alpha: mask opacity.

    Returns:
        (3, H, W) uint8.
    """
    shown = prediction.above(score_threshold).to("cpu")
    if len(shown) == 0:
        return image.clone()
    colors = class_colors(len(class_names) + 1)
    instance_colors = [colors[int(label)] for label in shown.labels]
    picture = draw_segmentation_masks(image, shown.masks, alpha=alpha, colors=instance_colors)
    if boxes:
        names = [f"{class_names[int(label) - 1]} {score:.2f}" for label, score in zip(shown.labels, shown.scores)]
        picture = draw_bounding_boxes(picture, shown.boxes, labels=names, colors=instance_colors, width=1)
    return picture


#: Colours of matching outcomes: found (green), wrong (red), missed (blue), not counted (grey); plain
#: ground truth in amber.
OUTCOME_COLORS = {"true_positive": (44, 160, 44), "false_positive": (214, 39, 40), "missed": (31, 119, 180),
                  "ignored": (150, 150, 150), "ground_truth": (255, 193, 7)}


def outcome_overlay(image: torch.Tensor, masks: torch.Tensor, outcomes: list[str], labels: list[str] | None = None,
                    *, alpha: float = 0.5) -> torch.Tensor:
    """The image with each mask filled in its outcome's colour (OUTCOME_COLORS; any TIDE false-positive
    type counts as "false_positive") and, if given, its label written at the top left of its box.

    Args:
        image: (3, H, W) uint8.
        masks: (N, H, W) bool.
        outcomes: N error types as per_instance.csv names them.
        labels: N texts, e.g. "star 0.91 IoU 0.84".

    Returns:
        (3, H, W) uint8.
    """
    if len(outcomes) == 0:
        return image.clone()
    colors = [OUTCOME_COLORS.get(o, OUTCOME_COLORS["false_positive"]) for o in outcomes]
    picture = draw_segmentation_masks(image, masks.bool(), alpha=alpha, colors=colors)
    if labels is not None:
        from torchvision.ops import masks_to_boxes

        nonempty = masks.flatten(1).any(1)
        if nonempty.any():
            boxes = masks_to_boxes(masks[nonempty].bool())
            kept = nonempty.nonzero().flatten().tolist()
            picture = draw_bounding_boxes(picture, boxes, labels=[labels[i] for i in kept],
                                          colors=[colors[i] for i in kept], width=1)
    return picture
