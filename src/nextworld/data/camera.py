"""The camera's motion, read straight off the pixels: a label-free oracle for scrolling games.

In CoinRun (and most side-scrollers) the camera follows the agent, so most of what changes
between two frames is a translation of the whole view. :func:`camera_shifts` finds, for each
pair of consecutive frames, the integer shift that best aligns them; :func:`translate` applies
a shift to frames. A motion-compensated Genie moves its tokens and pixels with them
(``models/genie``: ``VideoTokenizer.encode_moved``, ``LatentActionConfig.motion_weight``,
``GenieWorld.step``). The benchmarks use them as oracles: how much of the recorded action the
motion carries (``benchmarks/action_visibility.py``), a dynamics told the motion
(``benchmarks/genie_motion_oracle.py``), and how well a world that tracks the camera perfectly
could dream (``benchmarks/genie_camera_bound.py``).

Convention: a shift (dy, dx) moves the content, so ``translate(a, dy, dx)[y, x] == a[y - dy, x - dx]``,
and ``camera_shifts`` of ``[a, translate(a, dy, dx)]`` is ``(dy, dx)`` (away from the borders).
"""

from __future__ import annotations

import torch

MAX_SHIFT = 4
"""The largest shift searched, in pixels along each axis (a jump moves CoinRun's view 4 or more at 64x64)."""


def camera_shifts(frames: torch.Tensor, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """The shift that best aligns each frame with the next.

    Args:
        frames: float [..., T, C, H, W], any scale; colour is averaged to grey.
        max_shift: shifts searched along each axis, -max_shift .. max_shift.
    Returns:
        int64 [..., T-1, 2]: (dy, dx) of transition t -> t+1, minimising the mean squared
        difference between frame t's centre (a margin of ``max_shift + 4`` pixels) and frame
        t+1 shifted. Ties (a flat centre) go to the first shift in (dy, dx) order.
    """
    grey = frames.float().mean(dim=-3)  # (..., T, H, W)
    h, w = grey.shape[-2:]
    m = max_shift + 4
    if h <= 2 * m or w <= 2 * m:
        raise ValueError(f"frames of {h}x{w} are too small to search shifts of {max_shift} pixels")
    centre = grey[..., :-1, m:h - m, m:w - m]
    later = grey[..., 1:, :, :]
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)]
    errors = torch.stack([(centre - later[..., m + dy:h - m + dy, m + dx:w - m + dx]).square().mean(dim=(-2, -1))
                          for dy, dx in shifts])  # (S, ..., T-1)
    return torch.tensor(shifts, device=frames.device)[errors.argmin(dim=0)]


def translate(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Frames moved by integer shifts, the uncovered border filled by repeating the edge.

    Args:
        frames: [N, C, H, W].
        shifts: int [N, 2], (dy, dx) per frame: the content moves down by dy and right by dx.
    Returns:
        [N, C, H, W].
    """
    if frames.dim() != 4 or shifts.shape != (frames.shape[0], 2):
        raise ValueError(f"want frames [N, C, H, W] and shifts [N, 2], got {tuple(frames.shape)} "
                         f"and {tuple(shifts.shape)}")
    n, _, h, w = frames.shape
    shifts = shifts.to(frames.device).long()
    rows = (torch.arange(h, device=frames.device) - shifts[:, :1]).clamp(0, h - 1)  # (N, H)
    cols = (torch.arange(w, device=frames.device) - shifts[:, 1:]).clamp(0, w - 1)  # (N, W)
    picked = frames[torch.arange(n, device=frames.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def covered(shifts: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Where :func:`translate` by ``shifts`` (int [N, 2]) shows moved content rather than a
    repeated edge: bool [N, 1, height, width]."""
    rows = torch.arange(height, device=shifts.device) - shifts[:, :1].long()  # (N, H): source row
    cols = torch.arange(width, device=shifts.device) - shifts[:, 1:].long()  # (N, W)
    inside_rows = (rows >= 0) & (rows < height)
    inside_cols = (cols >= 0) & (cols < width)
    return (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]


def translate_over(frames: torch.Tensor, shifts: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Frames [N, C, H, W] moved by ``shifts`` (int [N, 2]) where they cover the view, and ``fill``
    ([N, C, H, W]) where the move uncovered the border (instead of :func:`translate`'s repeated edge)."""
    return torch.where(covered(shifts, *frames.shape[-2:]), translate(frames, shifts), fill)
