"""Spatial attention for the mask branch, as the spatial attention module (SAM) of CenterMask's SAG-Mask.

Lee & Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020, section 3.3: pool the
RoI features over channels by average and by max, concatenate the two maps, and let one 3×3 convolution
and a sigmoid decide which pixels of the RoI to emphasise. The map is returned beside the features so
that it can be shown to the user next to the mask it shaped.
"""

from __future__ import annotations

import torch
from torch import nn


class SpatialAttention(nn.Module):
    """Re-weights each RoI's features by a learned per-pixel gate.

    ``(N, C, S, S) -> ((N, C, S, S), (N, 1, S, S))``: the gated features and the gate in [0, 1].
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat([features.mean(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)], dim=1)
        attention = torch.sigmoid(self.conv(pooled))
        return features * attention, attention
