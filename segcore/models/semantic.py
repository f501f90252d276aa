"""The semantic baselines, FCN and U-Net, behind Mask R-CNN's calling convention.

One training loop drives every segcore model, so a semantic network is wrapped in
:class:`SemanticSegmenter`, which speaks torchvision's detection convention:

- training: ``model(images, targets) -> {"loss_ce": scalar}``, where ``images`` is a list of (3, H, W)
  float tensors in [0, 1] (sizes may differ) and each target holds a "semantic" (H, W) int64 label map
  (0 background, 1..K classes, 255 ignored); other target keys are ignored;
- evaluation: ``model(images) -> [{"probabilities": (C, H, W)}, ...]``, softmax probabilities at each
  image's own size, C = num_classes including background.

:func:`segcore.models.prediction.predict` turns evaluation outputs into ``Prediction`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.fcn import FCN, FCNHead

from segcore.data.label_maps import IGNORE_INDEX
from segcore.errors import SegcoreError
from segcore.models.unet import UNet

#: ImageNet statistics, the normalisation torchvision's backbones (and its Mask R-CNN) expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
_OUTPUT_STRIDES = (8, 16, 32)


@dataclass
class FCNOptions:
    """Options of the FCN baseline (torchvision's ``FCN`` with an ``FCNHead`` on a ResNet).

    Attributes:
        backbone: ResNet depth, one of resnet18, resnet34, resnet50 (randomly initialised).
        output_stride: resolution of the features the head sees, relative to the image: 8, 16 or 32.
            Below 32, the last stages trade their stride for dilation as torchvision's fcn_resnet50 does
            (layers 3–4 at stride 8), so small objects are not lost in a 1/32 feature grid; 32 is the
            plain ResNet, about 4–10× cheaper.
        stages: ResNet stages used, 4 (all) or 3: cut after stage 3, the network keeps a quarter of its
            weights (ResNet-18: 2.8 M instead of 11.2 M) and sees at most stride 16.
    """

    backbone: str = "resnet18"
    output_stride: int = 8
    stages: int = 4


@dataclass
class UNetOptions:
    """Options of the U-Net baseline.

    Attributes:
        depth: number of down-sampling stages; images are padded to a multiple of ``2 ** depth``.
        width: channels of the first stage, doubled at each stage down.
    """

    depth: int = 4
    width: int = 32


class SemanticSegmenter(nn.Module):
    """A dense-prediction network behind the list-of-images calling convention of torchvision's Mask R-CNN.

    Normalises each image with ``image_mean`` / ``image_std``, pads the batch at the bottom and right to
    a common size rounded up to ``size_divisor`` (padding is zero after normalisation, i.e. the mean
    colour, and the ignore label in targets), runs the network and crops outputs back to each image.

    Args:
        network: ``(B, 3, H, W) -> (B, C, H, W)`` logits, or torchvision's ``{"out": (B, C, H, W)}``.
        num_classes: C, background included.
        size_divisor: the padded height and width are multiples of it (the network's total stride).
        image_mean, image_std: per-channel normalisation of [0, 1] images.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        num_classes: int,
        size_divisor: int,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.network = network
        self.num_classes = num_classes
        self.size_divisor = size_divisor
        # not persistent: they are constants of the recipe, not weights, and keep checkpoint keys the network's
        mean = torch.tensor(image_mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(image_std, dtype=torch.float32).view(-1, 1, 1)
        self.register_buffer("image_mean", mean, persistent=False)
        self.register_buffer("image_std", std, persistent=False)

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses in training mode, per-image probabilities in evaluation mode.

        Args:
            images: list of (3, H_i, W_i) float tensors in [0, 1].
            targets: training only; list of dicts with "semantic" (H_i, W_i) int64 label maps.

        Returns:
            training: ``{"loss_ce": scalar}``; evaluation: ``[{"probabilities": (C, H_i, W_i) float32}, ...]``.
        """
        assert len(images) > 0, "a batch needs at least one image"
        sizes = [tuple(image.shape[-2:]) for image in images]
        logits = self.network(self.batch_images(images))
        if isinstance(logits, dict):  # torchvision's segmentation models answer {"out": ..., "aux": ...}
            logits = logits["out"]
        if self.training:
            assert targets is not None and len(targets) == len(images), "training mode needs one target per image"
            return {"loss_ce": semantic_cross_entropy(logits, self.batch_targets(targets, logits.shape[-2:]))}
        # softmax in float32 even under autocast: probabilities are compared and thresholded downstream
        probabilities = logits.float().softmax(dim=1)
        return [{"probabilities": p[:, :h, :w]} for p, (h, w) in zip(probabilities, sizes)]

    def batch_images(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``list of (3, H_i, W_i) -> (B, 3, H, W)`` normalised and zero-padded, H and W multiples of size_divisor."""
        height, width = self._padded_size(images)
        batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
        for image, slot in zip(images, batch):
            assert image.ndim == 3 and image.is_floating_point(), f"expected a (3, H, W) float image, got {image.shape}"
            slot[:, : image.shape[-2], : image.shape[-1]].copy_((image - self.image_mean) / self.image_std)
        return batch

    def batch_targets(self, targets: list[dict[str, torch.Tensor]], size: tuple[int, int]) -> torch.Tensor:
        """``list of (H_i, W_i) label maps -> (B, H, W)`` int64, padded with ``IGNORE_INDEX``."""
        semantic = [target["semantic"] for target in targets]
        batch = torch.full((len(semantic), *size), IGNORE_INDEX, dtype=torch.int64, device=semantic[0].device)
        for label_map, slot in zip(semantic, batch):
            slot[: label_map.shape[-2], : label_map.shape[-1]] = label_map
        return batch

    def _padded_size(self, images: list[torch.Tensor]) -> tuple[int, int]:
        divisor = self.size_divisor
        height = max(image.shape[-2] for image in images)
        width = max(image.shape[-1] for image in images)
        return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def semantic_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean pixel-wise cross-entropy over the pixels not labelled ``IGNORE_INDEX``.

    ``(B, C, H, W) logits, (B, H, W) int64 labels -> scalar``. A batch with no labelled pixel at all
    gives 0 (with a graph, so backward still runs) rather than the NaN of ``F.cross_entropy``'s mean.
    """
    # sum / count instead of reduction="mean": same value, but no NaN when every pixel is ignored, and no
    # host-device sync to test for that case
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp(min=1)


def build_fcn(options: FCNOptions, *, num_classes: int) -> SemanticSegmenter:
    """FCN (torchvision's ``FCN`` and ``FCNHead``) on a randomly initialised ResNet; nothing is downloaded.

    Args:
        options: backbone and output stride.
        num_classes: classes including background.
    """
    _check_num_classes(num_classes, "fcn")
    if options.backbone not in _RESNETS:
        raise SegcoreError(f"unknown backbone {options.backbone!r} for fcn; choose one of {', '.join(_RESNETS)}.")
    if options.output_stride not in _OUTPUT_STRIDES:
        raise SegcoreError(f"output_stride {options.output_stride!r} is not supported for fcn; "
                           f"choose one of {', '.join(map(str, _OUTPUT_STRIDES))}.")
    if options.stages not in (3, 4) or (options.stages == 3 and options.output_stride == 32):
        raise SegcoreError(f"fcn stages {options.stages!r} with output_stride {options.output_stride} is not "
                           "supported; use stages 4, or stages 3 with output_stride 8 or 16.")
    backbone, channels = _resnet_features(options.backbone, options.output_stride, options.stages)
    network = FCN(backbone, FCNHead(channels, num_classes))
    # 32, the ResNet's nominal stride, whatever the dilation: the feature grid then stays aligned with pixels
    return SemanticSegmenter(network, num_classes=num_classes, size_divisor=32)


def build_unet(options: UNetOptions, *, num_classes: int) -> SemanticSegmenter:
    """U-Net (:class:`segcore.models.unet.UNet`) of the given depth and width, randomly initialised.

    Args:
        options: depth and width.
        num_classes: classes including background.
    """
    _check_num_classes(num_classes, "unet")
    if not isinstance(options.depth, int) or options.depth < 1:
        raise SegcoreError(f"unet depth {options.depth!r} is out of range; "
                           "choose a whole number of at least 1 (4 is usual).")
    if not isinstance(options.width, int) or options.width < 1:
        raise SegcoreError(f"unet width {options.width!r} is out of range; "
                           "choose a whole number of at least 1 (32 is usual).")
    network = UNet(num_classes, depth=options.depth, width=options.width)
    return SemanticSegmenter(network, num_classes=num_classes, size_divisor=2**options.depth)


def _check_num_classes(num_classes: int, model: str) -> None:
    if num_classes < 2:
        raise SegcoreError(f"{model} needs num_classes of at least 2 (background and one class), got {num_classes}.")


def _resnet_features(name: str, output_stride: int, stages: int = 4) -> tuple[nn.Module, int]:
    """ResNet ``name`` cut after layer ``stages`` (3 or 4), as an ``IntermediateLayerGetter`` answering
    {"out": features}.

    ``(B, 3, H, W) -> {"out": (B, channels, H / output_stride, W / output_stride)}``; returns it and channels.
    """
    # which of layer2, layer3, layer4 give up their stride 2 for dilation
    dilate = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}[output_stride]
    if name == "resnet50":
        # Bottleneck blocks support dilation natively: exactly torchvision's fcn_resnet50 backbone
        resnet = resnet50(weights=None, replace_stride_with_dilation=dilate)
    else:
        # torchvision's BasicBlock refuses dilation at construction, so the built stages are converted
        resnet = _RESNETS[name](weights=None)
        dilation = 1
        for layer, dilated in zip([resnet.layer2, resnet.layer3, resnet.layer4], dilate):
            if dilated:
                dilation *= 2
                _dilate(layer, dilation)
    channels = resnet.fc.in_features // (2 if stages == 3 else 1)  # each stage doubles the width
    return IntermediateLayerGetter(resnet, return_layers={f"layer{stages}": "out"}), channels


def _dilate(layer: nn.Module, dilation: int) -> None:
    """Make a ResNet stage keep its input resolution: strides become 1, 3×3 convs dilate by ``dilation``."""
    for module in layer.modules():
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = (dilation, dilation)
                module.padding = (dilation, dilation)
