"""Pictures of what a Genie stage does, for people: training samples and evaluation reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nextworld.data.frames import save_image_grid, to_model_frames, to_stored_frames
from nextworld.data.windows import ClipDataset
from nextworld.models.genie.tokenizer import VideoTokenizer


@torch.no_grad()
def save_reconstructions(tokenizer: VideoTokenizer, clips: ClipDataset, path: Path, count: int = 8) -> Path:
    """A PNG of ``count`` frames (top row) over their reconstructions through the tokens (bottom row).

    The frames are the first of ``count`` clips evenly spaced over ``clips``.
    """
    chosen = np.linspace(0, len(clips) - 1, count).round().astype(int)
    frames = torch.stack([clips[int(i)]["frames"][0] for i in chosen])  # (count, H, W, C) uint8
    device = next(tokenizer.parameters()).device
    x = to_model_frames(frames.to(device)[:, None])  # (count, 1, C, H, W)
    recon = to_stored_frames(tokenizer.decode(tokenizer.encode(x))[:, 0])  # (count, H, W, C)
    return save_image_grid([frames.numpy(), recon.cpu().numpy()], path)
