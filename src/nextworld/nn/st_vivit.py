"""Patch-wise space-time transformers for frames (Genie's ST-ViViT tokenizer, Bruce et al. 2024).

``STViViTEncoder`` cuts each frame into ``patch`` x ``patch`` patches, embeds them linearly
and runs a causal ``SpaceTimeTransformer`` over them: [B, T, C, H, W] -> [B, T, h, w, D]
(h = H / patch). ``STViViTDecoder`` runs another causal one over such a grid and maps each
position linearly back to its patch's pixels: [B, T, h, w, D] -> [B, T, C, H, W].

Temporal context is a window of ``max_frames`` frames: a clip of T frames is cut into
consecutive windows of ``max_frames`` (the last may be shorter), each run on its own, so
the output at frame t depends only on frames of its window up to t, and any T >= 1 works.
"""

from __future__ import annotations

import torch
from torch import nn

from nextworld.nn.space_time import SpaceTimeTransformer


def patchify(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """float [B, T, C, H, W] -> [B, T, h, w, C*p*p], p = patch, h = H / p."""
    b, t, c, height, width = frames.shape
    h, w = height // patch, width // patch
    x = frames.reshape(b, t, c, h, patch, w, patch).permute(0, 1, 3, 5, 2, 4, 6)  # (B, T, h, w, C, p, p)
    return x.reshape(b, t, h, w, c * patch * patch)  # (B, T, h, w, C*p*p)


def unpatchify(patches: torch.Tensor, channels: int, patch: int) -> torch.Tensor:
    """float [B, T, h, w, C*p*p] -> [B, T, C, H, W], the inverse of ``patchify``."""
    b, t, h, w, _ = patches.shape
    x = patches.reshape(b, t, h, w, channels, patch, patch).permute(0, 1, 4, 2, 5, 3, 6)  # (B, T, C, h, p, w, p)
    return x.reshape(b, t, channels, h * patch, w * patch)  # (B, T, C, H, W)


def _by_window(net: SpaceTimeTransformer, x: torch.Tensor) -> torch.Tensor:
    """Run ``net`` over float [B, T, h, w, D] in windows of ``net.max_frames`` frames -> same shape."""
    b, t, h, w, d = x.shape
    tokens = x.reshape(b, t, h * w, d)  # (B, T, S, D), row-major grid
    out = torch.cat([net(window) for window in tokens.split(net.max_frames, dim=1)], dim=1)  # (B, T, S, D)
    return out.view(b, t, h, w, -1)


class STViViTEncoder(nn.Module):
    """Patch embedding and a causal space-time transformer: frames [B, T, C, H, W] -> [B, T, h, w, dim].

    Args:
        channels: C of the frames.
        image_size: H = W of the frames.
        patch: pixels per patch side (H / patch tokens per side).
        dim, depth, heads: the transformer's width, blocks and attention heads.
        max_frames: frames per temporal window (see the module docstring).
    """

    def __init__(self, channels: int, image_size: int, patch: int, dim: int, depth: int, heads: int,
                 max_frames: int) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.transformer = SpaceTimeTransformer(dim, depth, heads, max_frames=max_frames,
                                                tokens_per_frame=(image_size // patch) ** 2, causal=True)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return _by_window(self.transformer, self.embed(patchify(frames, self.patch)))


class STViViTDecoder(nn.Module):
    """A causal space-time transformer and a linear patch head: [B, T, h, w, dim] -> frames [B, T, C, H, W].

    The output is unbounded (no sigmoid), as ``ConvDecoder``'s: callers that need pixels clamp it.
    Arguments as ``STViViTEncoder``'s.
    """

    def __init__(self, channels: int, image_size: int, patch: int, dim: int, depth: int, heads: int,
                 max_frames: int) -> None:
        super().__init__()
        self.channels, self.patch = channels, patch
        self.transformer = SpaceTimeTransformer(dim, depth, heads, max_frames=max_frames,
                                                tokens_per_frame=(image_size // patch) ** 2, causal=True)
        self.head = nn.Linear(dim, channels * patch * patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(self.head(_by_window(self.transformer, x)), self.channels, self.patch)
