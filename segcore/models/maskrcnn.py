"""Mask R-CNN from options: torchvision's model, a ResNet backbone with or without an FPN, and segcore's
mask branch (conv stack, optional squeeze-excitation and spatial attention, BCE and IoU mask losses).

With ``torchvision_options()`` (ResNet-50, FPN width 256, the plain head) the parameter names and shapes
are torchvision's ``maskrcnn_resnet50_fpn``, so its COCO weights file loads strictly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

from torch import nn
from torchvision.models import resnet
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform, _resize_image_and_masks, resize_boxes
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from segcore.errors import SegcoreError
from segcore.models.losses import IOU_LOSSES
from segcore.models.mask_head import build_mask_head
from segcore.models.paste import paste_masks
from segcore.models.roi_heads import MaskRoIHeads
from segcore.precision import float32_outputs

BACKBONES = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34, "resnet50": resnet.resnet50}
def group_norm(num_channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm of 32 groups (the largest divisor of the width up to 32 for other widths), as Detectron2's
    GN configs use it: its statistics are each image's own, so it does not depend on the batch size, which
    is small on a CPU."""
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels, eps=eps)


NORMS = {"batch": nn.BatchNorm2d, "frozen": FrozenBatchNorm2d, "group": group_norm}
#: the heads' normalisation for each backbone norm: frozen statistics only suit pretrained weights
HEAD_NORMS = {"batch": nn.BatchNorm2d, "frozen": nn.BatchNorm2d, "group": group_norm}


@dataclass
class MaskRCNNOptions:
    """Options of ``maskrcnn``. Defaults suit 256×256 images trained from scratch on a CPU
    (about 4M parameters).

    Attributes:
        backbone: resnet18, resnet34 or resnet50.
        fpn: multi-scale features through a feature pyramid; False uses the last returned layer alone.
        fpn_channels: width of the feature pyramid (or of the single-scale features).
        returned_layers: ResNet stages (1..4) that feed the pyramid.
        trainable_layers: ResNet stages left trainable, counted from the top (5 = all).
        norm: "batch" (BatchNorm, from scratch), "group" (GroupNorm, in the heads too where ``norm_heads``)
            or "frozen" (FrozenBatchNorm, for pretrained weights).
        norm_eps: the norm layers' epsilon; torchvision's COCO weights were trained with 0.
        min_size, max_size: images are resized so that the short side is min_size, the long at most max_size.
        anchor_sizes: one anchor size per pyramid level, smallest first (all on one level without an FPN).
        anchor_scales: multiples of each level's anchor size also used on that level, e.g. [1, 2] puts
            anchors of 16 and 32 on the finest level: large objects get well-matching anchors without
            another backbone stage.
        aspect_ratios: anchor aspect ratios (height / width).
        rpn_pre_nms_top_n, rpn_post_nms_top_n: proposals kept per level before NMS and in all after it.
        box_representation: width of the box head's two fully connected layers.
        box_batch_size_per_image: RoIs sampled per image to train the box head (a quarter of them at most
            positive, as torchvision and Detectron2 sample).
        mask_positives_per_image: at most this many of an image's positive RoIs train the mask branch,
            drawn at random; None for all of them.
        box_score_thresh: detections scoring less are dropped at inference.
        detections_per_img: most detections kept per image.
        mask_convs, mask_width: number and width of the mask branch's 3×3 conv layers.
        norm_heads: a norm after the feature pyramid's and the mask branch's convolutions (BatchNorm, or
            GroupNorm with ``norm="group"``), as torchvision's Mask R-CNN v2 has; it helps heads trained from
            scratch.
        attention: "none" or "spatial" (CenterMask's spatial attention module).
        squeeze_excitation: squeeze-excitation after the mask branch's convs.
        iou_loss: None, "jaccard" (soft IoU) or "lovasz" (Lovász hinge), added to the BCE mask loss.
        iou_loss_weight: weight of the IoU loss term.
    """

    backbone: str = "resnet18"
    fpn: bool = True
    fpn_channels: int = 64
    # stage 4 holds two thirds of a ResNet-18's weights and adds little at 256×256
    returned_layers: list[int] = field(default_factory=lambda: [1, 2, 3])
    trainable_layers: int = 5
    norm: str = "batch"
    norm_eps: float = 1e-5
    min_size: int = 256
    max_size: int = 512
    anchor_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    anchor_scales: list[float] = field(default_factory=lambda: [1.0, 2.0])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_pre_nms_top_n: int = 1000
    rpn_post_nms_top_n: int = 500
    box_representation: int = 256
    box_batch_size_per_image: int = 128
    mask_positives_per_image: int | None = None
    box_score_thresh: float = 0.05
    detections_per_img: int = 100
    mask_convs: int = 4
    mask_width: int = 64
    norm_heads: bool = True
    attention: str = "none"
    squeeze_excitation: bool = False
    iou_loss: str | None = None
    iou_loss_weight: float = 1.0


def torchvision_options(**overrides) -> MaskRCNNOptions:
    """Options under which the model is torchvision's ``maskrcnn_resnet50_fpn`` with its COCO weights.

    FrozenBatchNorm with epsilon 0 is what torchvision's builder sets for those weights.
    """
    options = MaskRCNNOptions(
        backbone="resnet50", fpn=True, fpn_channels=256, returned_layers=[1, 2, 3, 4], trainable_layers=3,
        norm="frozen", norm_eps=0.0, norm_heads=False, min_size=800, max_size=1333,
        anchor_sizes=[32, 64, 128, 256, 512], anchor_scales=[1.0],
        rpn_pre_nms_top_n=1000, rpn_post_nms_top_n=1000, box_representation=1024, box_batch_size_per_image=512,
        mask_width=256,
    )
    return dataclasses.replace(options, **overrides)


def _check(options: MaskRCNNOptions) -> None:
    choices = {"backbone": BACKBONES, "norm": NORMS, "attention": ("none", "spatial"), "iou_loss": (None, *IOU_LOSSES)}
    for name, allowed in choices.items():
        if getattr(options, name) not in allowed:
            names = ", ".join(str(a) for a in allowed)
            raise SegcoreError(
                f"maskrcnn option {name}={getattr(options, name)!r} is not known; choose one of {names}.")
    if not options.returned_layers or not set(options.returned_layers) <= {1, 2, 3, 4}:
        raise SegcoreError(f"maskrcnn option returned_layers={options.returned_layers} must list ResNet stages 1 to 4.")
    levels = len(options.returned_layers) + 1 if options.fpn else 1
    if options.fpn and len(options.anchor_sizes) != levels:
        raise SegcoreError(
            f"maskrcnn option anchor_sizes needs one size per pyramid level ({levels} for returned_layers="
            f"{options.returned_layers}), got {options.anchor_sizes}."
        )
    cap = options.mask_positives_per_image
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise SegcoreError(f"maskrcnn option mask_positives_per_image={cap!r} must be a whole number of at least 1, "
                           f"or none for every positive RoI.")


def build_backbone(options: MaskRCNNOptions) -> BackboneWithFPN:
    """A ResNet with a feature pyramid, or single-scale features from its last returned stage.

    ``(B, 3, H, W) -> {"0": (B, C, H/4, W/4), …, "pool": …}`` with an FPN; ``{"0": (B, C, H/s, W/s)}`` without.
    """
    norm_layer = functools.partial(NORMS[options.norm], eps=options.norm_eps)
    body = BACKBONES[options.backbone](weights=None, norm_layer=norm_layer)
    layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][: options.trainable_layers]
    if options.trainable_layers == 5:
        layers.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers):
            parameter.requires_grad_(False)
    returned = sorted(options.returned_layers) if options.fpn else [max(options.returned_layers)]
    stage_channels = body.inplanes // 8
    in_channels = [stage_channels * 2 ** (i - 1) for i in returned]
    backbone = BackboneWithFPN(
        body, {f"layer{k}": str(i) for i, k in enumerate(returned)}, in_channels, options.fpn_channels,
        extra_blocks=LastLevelMaxPool(), norm_layer=HEAD_NORMS[options.norm] if options.norm_heads else None,
    )
    if not options.fpn:
        # one lateral 1×1 and one 3×3 conv over a single stage: the same parameters without the
        # multi-scale fusion, so that the ablation measures the fusion alone
        backbone.fpn.extra_blocks = None
    return backbone


class StripSafeTransform(GeneralizedRCNNTransform):
    """torchvision's resizing and normalisation, except for a strip more than ``max_size`` times longer than
    wide (1x600 pixels with max_size 512): torchvision would scale its short side to zero pixels and fail,
    this keeps it one pixel across. Every other image is resized exactly as torchvision does. Masks are
    pasted back into the image by :func:`segcore.models.paste.paste_masks`: torchvision's result, faster."""

    def postprocess(self, result, image_shapes, original_image_sizes):
        """Boxes scaled back to each original image and masks pasted into it (inference only)."""
        if self.training:
            return result
        for prediction, size, original in zip(result, image_shapes, original_image_sizes):
            prediction["boxes"] = resize_boxes(prediction["boxes"], size, original)
            if "masks" in prediction:
                prediction["masks"] = paste_masks(prediction["masks"], prediction["boxes"], original)
        return result

    def resize(self, image, target=None):
        """(3, H, W) -> (3, h, w), with the target's boxes and masks to match."""
        height, width = image.shape[-2:]
        short, long = min(height, width), max(height, width)
        # torchvision's own arithmetic: the short side comes out as floor(short * scale)
        if self.fixed_size is not None or int(short * (self.max_size / long)) >= 1:
            return super().resize(image, target)
        scale = self.max_size / long
        size = (max(1, int(width * scale)), max(1, int(height * scale)))  # (width, height), as fixed_size is
        resized, target = _resize_image_and_masks(image, self.min_size[-1], self.max_size, target, fixed_size=size)
        if target is not None:
            target["boxes"] = resize_boxes(target["boxes"], (height, width), resized.shape[-2:])
        return resized, target


def build_maskrcnn(options: MaskRCNNOptions, *, num_classes: int) -> MaskRCNN:
    """Mask R-CNN with segcore's mask branch.

    Args:
        options: see :class:`MaskRCNNOptions`.
        num_classes: classes including the background.

    Returns:
        torchvision's ``MaskRCNN`` whose ``roi_heads`` is :class:`MaskRoIHeads`: in training mode
        ``model(images, targets)`` gives the loss terms, in eval mode ``model(images)`` gives per image
        boxes, labels, scores, masks (N, 1, H, W) and, with attention, attention (N, 1, 14, 14).
    """
    _check(options)
    backbone = build_backbone(options)
    levels = [str(i) for i in range(len(options.returned_layers))] if options.fpn else ["0"]
    if options.fpn:
        sizes = tuple(tuple(round(s * k) for k in options.anchor_scales) for s in options.anchor_sizes)
    else:
        sizes = (tuple(sorted({round(s * k) for s in options.anchor_sizes for k in options.anchor_scales})),)
    anchor_generator = AnchorGenerator(sizes, (tuple(options.aspect_ratios),) * len(sizes))
    channels = options.fpn_channels
    box_roi_pool = MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2)
    box_head = TwoMLPHead(channels * 7 * 7, options.box_representation)
    box_predictor = FastRCNNPredictor(options.box_representation, num_classes)
    mask_roi_pool = MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2)
    mask_head = build_mask_head(
        channels, num_convs=options.mask_convs, width=options.mask_width, attention=options.attention,
        squeeze_excitation=options.squeeze_excitation, norm=options.norm_heads, norm_layer=HEAD_NORMS[options.norm],
    )
    mask_predictor = MaskRCNNPredictor(options.mask_width, options.mask_width, num_classes)
    model = MaskRCNN(
        backbone, min_size=options.min_size, max_size=options.max_size, rpn_anchor_generator=anchor_generator,
        rpn_pre_nms_top_n_train=options.rpn_pre_nms_top_n, rpn_pre_nms_top_n_test=options.rpn_pre_nms_top_n,
        rpn_post_nms_top_n_train=options.rpn_post_nms_top_n, rpn_post_nms_top_n_test=options.rpn_post_nms_top_n,
        box_roi_pool=box_roi_pool, box_head=box_head, box_predictor=box_predictor,
        box_score_thresh=options.box_score_thresh, box_detections_per_img=options.detections_per_img,
        box_batch_size_per_image=options.box_batch_size_per_image,
        mask_roi_pool=mask_roi_pool, mask_head=mask_head, mask_predictor=mask_predictor,
    )
    model.transform = StripSafeTransform(options.min_size, options.max_size, model.transform.image_mean,
                                         model.transform.image_std)
    default = model.roi_heads
    # the same parts, run by segcore's mask branch; thresholds as torchvision's defaults
    model.roi_heads = MaskRoIHeads(
        box_roi_pool, box_head, box_predictor,
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=options.box_batch_size_per_image,
        positive_fraction=0.25, bbox_reg_weights=None, score_thresh=options.box_score_thresh,
        nms_thresh=default.nms_thresh, detections_per_img=options.detections_per_img,
        mask_roi_pool=mask_roi_pool, mask_head=mask_head, mask_predictor=mask_predictor,
        iou_loss=options.iou_loss, iou_loss_weight=options.iou_loss_weight,
        mask_positives_per_image=options.mask_positives_per_image,
    )
    # Under autocast the convolutions run in bfloat16 or float16; anchors (made in the features' dtype), box
    # decoding, NMS, the losses and the pasted masks need float32's precision, so each stage hands float32 on.
    float32_outputs(model.backbone, model.rpn.head, box_predictor, mask_head, mask_predictor)
    return model
