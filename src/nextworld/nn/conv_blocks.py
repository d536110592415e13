"""Convolutional stacks for frames: residual blocks and mirrored down/up-sampling stacks.

Every module here maps float ``[N, C, H, W]`` to ``[N, C', H', W']``; a model folds its
batch and time dimensions into N before calling them. ``ConvEncoder(widths)`` halves H and
W once per entry of ``widths`` and ``ConvDecoder(widths)`` doubles them back, so a pair
built from the same widths maps ``[N, C, H, W]`` to ``[N, widths[-1], H/2^S, W/2^S]`` and
back (S = len(widths)).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups where the channels allow it (fewer otherwise)."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(act(norm(conv(act(norm(x)))))); [N, C, H, W] -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ConvEncoder(nn.Module):
    """Stride-2 convolutions, one per width, then residual blocks at the lowest resolution.

    Downsampling comes first so that the costly residual blocks run on the smallest grid:
    the full-resolution layers are where a CPU spends its time.

    Args:
        in_channels: C of the input.
        widths: output channels of each stride-2 stage, highest resolution first.
        num_res_blocks: residual blocks after the last stage.
    Shapes:
        [N, in_channels, H, W] -> [N, widths[-1], H / 2^S, W / 2^S], S = len(widths).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], num_res_blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, stride=2, padding=1), group_norm(w), nn.SiLU()]
            c = w
        layers += [ResBlock(c) for _ in range(num_res_blocks)]
        layers += [group_norm(c), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """The mirror of ``ConvEncoder``: residual blocks, then transposed stride-2 convolutions.

    The last upsampling stage keeps ``widths[0]`` channels and a 3x3 convolution maps them
    to ``out_channels``, so every output pixel sees a neighbourhood rather than one
    transposed-conv tap. The output is unbounded (no sigmoid): losses see the raw values and
    callers that need pixels clamp them.

    Args:
        out_channels: C of the output.
        widths: the encoder's widths, highest resolution first.
        num_res_blocks: residual blocks before the first upsampling stage.
    Shapes:
        [N, widths[-1], h, w] -> [N, out_channels, h * 2^S, w * 2^S], S = len(widths).
    """

    def __init__(self, out_channels: int, widths: Sequence[int], num_res_blocks: int) -> None:
        super().__init__()
        c = widths[-1]
        layers: list[nn.Module] = [ResBlock(c) for _ in range(num_res_blocks)]
        for w in [*reversed(widths[:-1]), widths[0]]:
            layers += [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1), group_norm(w), nn.SiLU()]
            c = w
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
