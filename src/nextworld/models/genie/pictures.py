"""Pictures of what a Genie stage does, for people: training samples and evaluation reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nextworld.data.frames import save_image_grid, to_model_frames, to_stored_frames
from nextworld.data.windows import ClipDataset
from nextworld.models.genie.dynamics import GenieDynamics
from nextworld.models.genie.latent_actions import LatentActionModel
from nextworld.models.genie.tokenizer import VideoTokenizer
from nextworld.models.genie.world import GenieWorld


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


def _spaced_clips(clips: ClipDataset, count: int) -> torch.Tensor:
    """uint8 [count, T, H, W, C]: ``count`` clips evenly spaced over ``clips``."""
    chosen = np.linspace(0, len(clips) - 1, count).round().astype(int)
    return torch.stack([clips[int(i)]["frames"] for i in chosen])


@torch.no_grad()
def save_lam_predictions(lam: LatentActionModel, clips: ClipDataset, path: Path, count: int = 4) -> Path:
    """A PNG of ``count`` clips: each real clip's frames 1..T-1 over the latent action model's
    predictions of them (from the real past and the inferred action)."""
    frames = _spaced_clips(clips, count)  # (count, T, H, W, C)
    device = next(lam.parameters()).device
    pred, _ = lam(to_model_frames(frames.to(device)))  # (count, T-1, C, H, W)
    pred = to_stored_frames(pred).cpu().numpy()
    rows = [r for i in range(count) for r in (frames[i, 1:].numpy(), pred[i])]
    return save_image_grid(rows, path)


@torch.no_grad()
def save_dream_samples(dynamics: GenieDynamics, tokenizer: VideoTokenizer, lam: LatentActionModel,
                       clips: ClipDataset, path: Path, count: int = 4) -> Path:
    """A PNG of ``count`` clips: each real clip over its regeneration by the dynamics model from
    the real first frame and the latent actions inferred from the real clip (argmax sampling)."""
    frames = _spaced_clips(clips, count)  # (count, T, H, W, C)
    device = next(dynamics.parameters()).device
    x = to_model_frames(frames.to(device))  # (count, T, C, H, W)
    world = GenieWorld(tokenizer, lam, dynamics)  # puts the stages in eval mode; fit() sets train mode again
    world.set_sampling(8, 0.0)
    dreamed = world.rollout(x[:, :1], world.infer_actions(x))  # (count, T-1, C, H, W)
    dreamed = to_stored_frames(dreamed).cpu().numpy()
    rows = [r for i in range(count) for r in (frames[i, 1:].numpy(), dreamed[i])]
    return save_image_grid(rows, path)
