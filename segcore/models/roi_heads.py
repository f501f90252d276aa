"""Mask R-CNN's RoI heads with segcore's mask branch: configurable mask losses and attention outputs.

torchvision's ``RoIHeads.forward`` runs the box, mask and keypoint branches in one function with the
BCE mask loss fixed inside it. segcore keeps torchvision's box branch (sampling, losses, post-processing
are reused as they are) and runs its own mask branch, so that the mask loss can gain an IoU term and
each detection can carry the attention map that shaped its mask.
"""

from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    maskrcnn_inference,
    project_masks_on_boxes,
)

from segcore.models.losses import mask_losses


class MaskRoIHeads(RoIHeads):
    """torchvision's RoI heads, box and mask branches only, with segcore's mask losses.

    The mask head must answer ``(features, attention_or_None)``, as :class:`segcore.models.mask_head.MaskHead`.

    Training returns ``loss_classifier``, ``loss_box_reg``, ``loss_mask`` and, with an IoU loss,
    ``loss_mask_iou``. Inference returns per image ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,),
    ``masks`` (N, 1, 28, 28) probabilities (pasted into the image by the model's transform) and, with
    attention, ``attention`` (N, 1, 14, 14) in [0, 1], still in RoI coordinates.
    """

    def __init__(self, *args, iou_loss: str | None = None, iou_loss_weight: float = 1.0,
                 mask_positives_per_image: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        assert self.has_mask() and self.keypoint_predictor is None
        self.iou_loss = iou_loss
        self.iou_loss_weight = iou_loss_weight
        self.mask_positives_per_image = mask_positives_per_image

    def forward(self, features, proposals, image_shapes, targets=None):  # type: ignore[override]
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)

        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            # the mask branch learns from positive RoIs only, each against the object it was matched to
            positive = [self._mask_sample(torch.where(image_labels > 0)[0]) for image_labels in labels]
            mask_proposals = [p[keep] for p, keep in zip(proposals, positive)]
            matched = [m[keep] for m, keep in zip(matched_idxs, positive)]
            mask_logits, _ = self._mask_branch(features, mask_proposals, image_shapes)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            losses.update(self._mask_losses(mask_logits, mask_proposals, matched, targets))
            return [], losses

        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        mask_logits, attention = self._mask_branch(features, boxes, image_shapes)
        result = [{"boxes": b, "labels": c, "scores": s} for b, c, s in zip(boxes, labels, scores)]
        for r, probabilities in zip(result, maskrcnn_inference(mask_logits, labels)):
            r["masks"] = probabilities
        if attention is not None:
            for r, maps in zip(result, attention.split([len(b) for b in boxes])):
                r["attention"] = maps
        return result, {}

    def _mask_sample(self, positive: torch.Tensor) -> torch.Tensor:
        """(P,) indices of an image's positive RoIs -> at most ``mask_positives_per_image`` of them, drawn at
        random: the box sampler already drew them at random, so a cap keeps the mask loss unbiased."""
        cap = self.mask_positives_per_image
        if cap is None or len(positive) <= cap:
            return positive
        return positive[torch.randperm(len(positive), device=positive.device)[:cap]]

    def _mask_branch(self, features, boxes, image_shapes):
        """(per-image boxes) -> mask logits (R, K, 28, 28) and attention (R, 1, 14, 14) or None."""
        mask_features, attention = self.mask_head(self.mask_roi_pool(features, boxes, image_shapes))
        return self.mask_predictor(mask_features), attention

    def _mask_losses(self, mask_logits, proposals, matched_idxs, targets):
        size = mask_logits.shape[-1]
        labels = torch.cat([t["labels"][i] for t, i in zip(targets, matched_idxs)])
        mask_targets = torch.cat([
            project_masks_on_boxes(t["masks"], p, i, size) for t, p, i in zip(targets, proposals, matched_idxs)
        ])
        # each RoI is scored on the logits of its ground-truth class only, as in Mask R-CNN
        logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
        return mask_losses(logits, mask_targets, iou_loss=self.iou_loss, iou_loss_weight=self.iou_loss_weight)
