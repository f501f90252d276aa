"""Mask R-CNN's mask branch: a stack of 3×3 convolutions, optionally with squeeze-excitation and spatial
attention, ahead of torchvision's predictor (2×2 deconvolution to 28×28, then 1×1 per-class logits).

The conv stack is torchvision's own ``MaskRCNNHeads``, so that with the extras switched off the
parameter names are torchvision's (``mask_head.0.0.weight`` …) and its COCO weights load strictly; the
extras are named modules beside it (``mask_head.squeeze_excitation``, ``mask_head.spatial_attention``)
and start fresh when such a file is loaded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops import SqueezeExcitation

from segcore.models.attention import SpatialAttention


class MaskHead(MaskRCNNHeads):
    """RoI features to mask features, and the attention map where there is one.

    ``(N, C_in, 14, 14) -> ((N, C, 14, 14), (N, 1, 14, 14) or None)``.

    Args:
        in_channels: channels of the RoI features (the FPN width).
        layers: output channels of each 3×3 conv layer, e.g. ``[256] * 4``.
        squeeze_excitation: a channel gate applied after the convs, or None.
        spatial_attention: a spatial gate applied last, as in SAG-Mask, or None.
        norm_layer: a normalisation after each conv (torchvision's v2 heads use BatchNorm2d), or None.
    """

    def __init__(
        self,
        in_channels: int,
        layers: list[int],
        *,
        squeeze_excitation: nn.Module | None = None,
        spatial_attention: nn.Module | None = None,
        norm_layer: type[nn.Module] | None = None,
    ) -> None:
        super().__init__(in_channels, layers, dilation=1, norm_layer=norm_layer)
        self.num_convs = len(layers)
        self.squeeze_excitation = squeeze_excitation
        self.spatial_attention = spatial_attention

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:  # type: ignore[override]
        for i in range(self.num_convs):
            features = self[i](features)
        if self.squeeze_excitation is not None:
            features = self.squeeze_excitation(features)
        attention = None
        if self.spatial_attention is not None:
            features, attention = self.spatial_attention(features)
        return features, attention


def build_mask_head(
    in_channels: int,
    *,
    num_convs: int = 4,
    width: int = 256,
    attention: str = "none",
    squeeze_excitation: bool = False,
    norm: bool = False,
    norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
) -> MaskHead:
    """The mask branch's conv stack from options.

    Args:
        in_channels: channels of the RoI features.
        num_convs: number of 3×3 conv layers.
        width: channels of each conv layer.
        attention: ``"none"`` or ``"spatial"`` (CenterMask's SAM).
        squeeze_excitation: add torchvision's SqueezeExcitation after the convs.
        norm: a norm layer after each conv.
        norm_layer: which, given the channel count (BatchNorm by default).
    """
    return MaskHead(
        in_channels,
        [width] * num_convs,
        # reduction 4, as CenterMask's eSE keeps the channel count of small heads usable
        squeeze_excitation=SqueezeExcitation(width, max(width // 4, 1)) if squeeze_excitation else None,
        spatial_attention=SpatialAttention() if attention == "spatial" else None,
        norm_layer=norm_layer if norm else None,
    )
