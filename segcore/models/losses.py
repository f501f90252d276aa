"""Mask losses: per-pixel binary cross-entropy and mask IoU losses (soft Jaccard, Lovász hinge).

Pure functions of (N, M, M) logits and targets, one row per RoI. Each handles the empty case (N = 0, an
image batch with no positive RoI) by returning a zero that is still connected to the graph, so that
distributed training sees every parameter used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IOU_LOSSES = ("jaccard", "lovasz")


def _empty(logits: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0


def mask_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy, as Mask R-CNN's mask loss.

    Args:
        logits: (N, M, M) mask logits of each RoI's ground-truth class.
        targets: (N, M, M) targets in [0, 1] (ground-truth masks resampled onto the RoIs).
    """
    if logits.numel() == 0:
        return _empty(logits)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def soft_jaccard_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − soft IoU between the predicted probabilities and the targets, averaged over RoIs.

    ``eps`` smooths the ratio so that a RoI with an empty target and an empty prediction costs nothing
    rather than 0/0.

    Args:
        logits: (N, M, M) mask logits.
        targets: (N, M, M) targets in [0, 1].
    """
    if logits.numel() == 0:
        return _empty(logits)
    probabilities = torch.sigmoid(logits.float()).flatten(1)
    targets = targets.float().flatten(1)
    intersection = (probabilities * targets).sum(1)
    union = (probabilities + targets - probabilities * targets).sum(1)
    return (1.0 - (intersection + eps) / (union + eps)).mean()


def lovasz_hinge_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Lovász hinge: a convex surrogate of 1 − IoU (Berman et al., CVPR 2018), per RoI, averaged.

    Args:
        logits: (N, M, M) mask logits.
        targets: (N, M, M) targets; binarised at 0.5, since the Lovász extension is defined on sets.
    """
    if logits.numel() == 0:
        return _empty(logits)
    logits = logits.float().flatten(1)
    labels = (targets.flatten(1) >= 0.5).float()
    errors = 1.0 - logits * (2.0 * labels - 1.0)
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    labels_sorted = labels.gather(1, order)
    # gradient of the Jaccard loss with respect to the sorted errors (Berman et al., Alg. 1)
    positives = labels_sorted.sum(1, keepdim=True)
    intersection = positives - labels_sorted.cumsum(1)
    union = positives + (1.0 - labels_sorted).cumsum(1)
    jaccard = 1.0 - intersection / union
    gradient = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    return (F.relu(errors_sorted) * gradient).sum(1).mean()


def mask_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    iou_loss: str | None = None,
    iou_loss_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The mask branch's loss terms, each logged on its own.

    Args:
        logits: (N, M, M) mask logits of each RoI's ground-truth class.
        targets: (N, M, M) targets in [0, 1].
        iou_loss: None, ``"jaccard"`` or ``"lovasz"``.
        iou_loss_weight: weight of the IoU term beside the BCE term (weight 1).

    Returns:
        ``{"loss_mask": bce}`` plus ``"loss_mask_iou"`` (already weighted) when an IoU loss is chosen.
    """
    losses = {"loss_mask": mask_bce_loss(logits, targets)}
    if iou_loss == "jaccard":
        losses["loss_mask_iou"] = iou_loss_weight * soft_jaccard_loss(logits, targets)
    elif iou_loss == "lovasz":
        losses["loss_mask_iou"] = iou_loss_weight * lovasz_hinge_loss(logits, targets)
    else:
        assert iou_loss is None, iou_loss
    return losses
