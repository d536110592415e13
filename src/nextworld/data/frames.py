"""Frames and pictures: any picture into a dataset frame (square, resized, uint8 RGB), frames
into a picture, and frames between the stored layout and the model layout.

Stored frames are uint8 ``[..., H, W, C]``; models take float ``[..., C, H, W]`` in [0, 1]
(the conventions of ``nextworld``'s package docstring). ``to_model_frames`` and
``to_stored_frames`` are the one crossing between the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from nextworld.atomic_files import write_atomic


def fit_square(image: Image.Image, size: int, mode: Literal["crop", "pad"]) -> np.ndarray:
    """Make an image square (centre crop, or black padding) and resize it.

    Shrinking averages over areas (box filter); enlarging is bilinear.

    Returns:
        uint8 [size, size, 3].
    """
    width, height = image.size
    side = min(width, height) if mode == "crop" else max(width, height)
    if mode == "pad" and width != height:
        canvas = Image.new("RGB", (side, side))
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image, width, height = canvas, side, side
    left, top = (width - side) // 2, (height - side) // 2
    resample = Image.Resampling.BOX if side >= size else Image.Resampling.BILINEAR
    square = image.convert("RGB").resize((size, size), resample, box=(left, top, left + side, top + side))
    return np.asarray(square, dtype=np.uint8)


def on_white(image: Image.Image) -> Image.Image:
    """An image with its transparent parts laid on white (a sketch's background is paper), as RGB."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def to_model_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, C] -> float [..., C, H, W] in [0, 1]."""
    return frames.movedim(-1, -3).float() / 255


def to_stored_frames(x: torch.Tensor) -> torch.Tensor:
    """float [..., C, H, W] in [0, 1] (clamped) -> uint8 [..., H, W, C]."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1)


def save_image_grid(rows: list[np.ndarray], path: str | Path, scale: int = 2, gap: int = 2) -> Path:
    """Write rows of frames as one PNG (atomically), each frame upscaled by nearest neighbour.

    Args:
        rows: each uint8 [N, H, W, C]; all rows have the same N, H, W.
        path: the PNG to write; its directory is created.
        scale: integer upscaling factor, so small frames stay crisp.
        gap: white pixels between frames (before scaling).
    """
    n, h, w, _ = rows[0].shape
    grid = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for r, frames in enumerate(rows):
        for i, frame in enumerate(frames):
            grid[r * (h + gap):r * (h + gap) + h, i * (w + gap):i * (w + gap) + w] = frame[..., :3]
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return write_atomic(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
