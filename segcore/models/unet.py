"""U-Net (Ronneberger et al., 2015): an encoder–decoder with skip connections, the semantic baseline
that trains from scratch on small datasets.

Each stage is two 3×3 conv + BatchNorm + ReLU layers; the encoder halves the resolution with 2×2 max
pooling and doubles the channels, the decoder doubles it back with a 2×2 transposed convolution and
concatenates the encoder's features of the same resolution. Convolutions are padded (unlike the paper's
valid convolutions) so the output has the input's size; the input size must be divisible by
``2 ** depth``, which :class:`segcore.models.semantic.SemanticSegmenter` guarantees by padding.

Checkpoint keys are stable names: ``encoder.<i>.conv1.weight`` …, ``decoder.<i>.up.weight``,
``decoder.<i>.block.conv1.weight`` …, ``head.weight``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3×3 conv + BatchNorm + ReLU layers at one resolution.

    ``(B, C_in, H, W) -> (B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        # no conv bias: the BatchNorm right after it has its own
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)),
            ("bn1", nn.BatchNorm2d(out_channels)),
            ("relu1", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)),
            ("bn2", nn.BatchNorm2d(out_channels)),
            ("relu2", nn.ReLU(inplace=True)),
        ]))


class UpBlock(nn.Module):
    """One decoder stage: up-sample by 2, concatenate the skip features, then a :class:`ConvBlock`.

    ``(B, 2C, H, W), skip (B, C, 2H, 2W) -> (B, C, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.block = ConvBlock(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net mapping normalised images to per-pixel class logits.

    ``(B, 3, H, W) -> (B, num_classes, H, W)``, with H and W divisible by ``2 ** depth``.

    Args:
        num_classes: output channels, background included.
        depth: number of down-sampling stages; the bottleneck sees ``(H / 2**depth, W / 2**depth)``.
        width: channels of the first stage, doubled at each stage down (``width * 2**depth`` at the
            bottleneck).
        in_channels: channels of the input image.
    """

    def __init__(self, num_classes: int, *, depth: int = 4, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        self.depth = depth
        channels = [width * 2**i for i in range(depth + 1)]
        # encoder.0 .. encoder.depth-1 feed the skips; encoder.depth is the bottleneck
        self.encoder = nn.ModuleList(
            ConvBlock(c_in, c_out) for c_in, c_out in zip([in_channels] + channels[:-1], channels)
        )
        self.pool = nn.MaxPool2d(2)
        # decoder.0 is the deepest stage, so the decoder runs in index order
        self.decoder = nn.ModuleList(UpBlock(channels[i + 1], channels[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(channels[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = 2**self.depth
        assert x.shape[-2] % stride == 0 and x.shape[-1] % stride == 0, (
            f"U-Net of depth {self.depth} needs H and W divisible by {stride}, got {tuple(x.shape[-2:])}"
        )
        skips = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottleneck's own output is x
        for stage in self.decoder:
            x = stage(x, skips.pop())
        return self.head(x)
