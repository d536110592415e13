"""Multi-block space-time masking (V-JEPA, Bardes et al. 2024): which tokens a video JEPA sees
and which it must predict.

Tokens of a clip lie on a grid ``[grid_t, grid_h, grid_w]`` (time steps of tubelets x patch
rows x patch columns), flattened in that row-major order to ``N = grid_t * grid_h * grid_w``.
A mask is the union of ``num_blocks`` rectangles of the spatial grid, each extended over the
whole time axis (a *tube*): V-JEPA masks tubes because a block masked in one frame only
is copied from its neighbours in time, which teaches nothing. Masked tokens are the
*targets* the predictor must fill in; the rest are the *context* the encoder sees.

Each block's area is a fraction of the spatial grid drawn uniformly from ``block_scale``,
its aspect ratio (height / width) uniformly from ``aspect_ratio``, its position uniformly
among those that fit. V-JEPA uses two such masks per clip: "short-range", 8 blocks of 0.15
(67 % of an 8 x 8 grid masked on average, measured over 2,000 masks), and "long-range",
2 blocks of 0.7 (85 %).

Randomness comes from ``generator``, or from torch's global CPU generator when it is None
(the training engine checkpoints that one, so a resumed run draws the same masks).
"""

from __future__ import annotations

import math

import torch


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _check_range(name: str, bounds: tuple[float, float], upper: float) -> None:
    low, high = bounds
    if not 0.0 < low <= high <= upper:
        raise ValueError(f"mask {name} must satisfy 0 < low <= high <= {upper}, got {bounds}")


def multiblock_mask(grid_t: int, grid_h: int, grid_w: int, *, num_blocks: int,
                    block_scale: tuple[float, float] = (0.15, 0.15),
                    aspect_ratio: tuple[float, float] = (0.75, 1.5),
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """One multi-block tube mask over a token grid.

    Args:
        grid_t, grid_h, grid_w: the token grid (grid_h * grid_w >= 2, so that a tube can be
            masked and another left visible).
        num_blocks: rectangles in the union (>= 1).
        block_scale: (low, high) fraction of the spatial grid that one block covers.
        aspect_ratio: (low, high) height / width of a block.
        generator: source of randomness; torch's global generator when None.
    Returns:
        bool [grid_t * grid_h * grid_w], True = masked (a target), in (t, h, w) row-major
        order; the same spatial pattern at every t. At least one token is masked and, if
        the blocks covered the whole grid, one random tube is unmasked again, so at least
        one is visible.
    """
    if min(grid_t, grid_h, grid_w) < 1 or grid_h * grid_w < 2:
        raise ValueError(f"mask grid needs grid_t >= 1 and grid_h * grid_w >= 2, got "
                         f"({grid_t}, {grid_h}, {grid_w})")
    if num_blocks < 1:
        raise ValueError(f"mask needs num_blocks >= 1, got {num_blocks}")
    _check_range("block_scale", block_scale, 1.0)
    _check_range("aspect_ratio", aspect_ratio, math.inf)
    spatial = torch.zeros(grid_h, grid_w, dtype=torch.bool)  # (h, w)
    for _ in range(num_blocks):
        area = grid_h * grid_w * _uniform(*block_scale, generator)
        ratio = _uniform(*aspect_ratio, generator)
        height = min(grid_h, max(1, round(math.sqrt(area * ratio))))
        width = min(grid_w, max(1, round(math.sqrt(area / ratio))))
        top = int(torch.randint(grid_h - height + 1, (), generator=generator))
        left = int(torch.randint(grid_w - width + 1, (), generator=generator))
        spatial[top:top + height, left:left + width] = True
    if spatial.all():
        spatial.view(-1)[int(torch.randint(grid_h * grid_w, (), generator=generator))] = False
    return spatial.expand(grid_t, grid_h, grid_w).reshape(-1)  # (T'*h*w,)


def _subset(indices: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` of ``indices`` (int64 [K], K >= count) chosen at random, in increasing order."""
    if indices.numel() == count:
        return indices
    keep = torch.randperm(indices.numel(), generator=generator)[:count]
    return indices[keep].sort().values


def sample_masks(batch_size: int, grid: tuple[int, int, int], *, num_blocks: int,
                 block_scale: tuple[float, float] = (0.15, 0.15),
                 aspect_ratio: tuple[float, float] = (0.75, 1.5),
                 generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Context and target token indices for a batch of clips, one ``multiblock_mask`` per clip.

    Clips of a batch must have equal counts to be stacked, so, as V-JEPA's collator does,
    every clip keeps only as many context tokens as the clip with the fewest has, and as
    many targets as the clip with the fewest targets. V-JEPA keeps the first ones in order;
    here the dropped ones are chosen at random, so that truncation does not always drop the
    last time steps.

    Args:
        batch_size: B.
        grid: (grid_t, grid_h, grid_w).
        num_blocks, block_scale, aspect_ratio, generator: as ``multiblock_mask``.
        device: where the returned indices live (masks are drawn on the CPU).
    Returns:
        context_idx int64 [B, Nc] and target_idx int64 [B, Nt], each row increasing, indices
        into the flattened grid; within a row the two never share an index; Nc, Nt >= 1.
    """
    masks = [multiblock_mask(*grid, num_blocks=num_blocks, block_scale=block_scale,
                             aspect_ratio=aspect_ratio, generator=generator) for _ in range(batch_size)]
    context = [torch.nonzero(~m).squeeze(1) for m in masks]
    target = [torch.nonzero(m).squeeze(1) for m in masks]
    n_context = min(idx.numel() for idx in context)
    n_target = min(idx.numel() for idx in target)
    context_idx = torch.stack([_subset(idx, n_context, generator) for idx in context])  # (B, Nc)
    target_idx = torch.stack([_subset(idx, n_target, generator) for idx in target])  # (B, Nt)
    return context_idx.to(device), target_idx.to(device)
