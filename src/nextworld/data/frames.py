"""Turning any picture into a dataset frame: square it, resize it, uint8 RGB."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image


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
