"""`nextworld train genie`: Genie's stages trained in order on the one training engine.

A Genie run directory holds one sub-run per stage (each a full engine run directory:
config.json, model.safetensors, training_state/, metrics.jsonl, tb/, samples/)::

    RUN/tokenizer/

Genie learns from video alone: its clips are read with ``keys=("frames",)``, so recorded
actions never reach a model; evaluation uses them as ground truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nextworld.data.episodes import EpisodeDataset, parse_range, split_episodes
from nextworld.data.frames import save_image_grid
from nextworld.data.windows import ClipDataset, WindowSpec
from nextworld.errors import UserInputError
from nextworld.models.genie.presets import TOKENIZER_PRESETS
from nextworld.models.genie.tokenizer import VideoTokenizer
from nextworld.train import FitResult, SampleFn, TrainConfig, fit, saved_train_config, seed_everything

STAGES = ("tokenizer",)
"""Genie's stages that exist so far, in training order."""


@dataclass(frozen=True)
class StageRecipe:
    """How one stage is trained under a preset: its clips and its engine settings."""

    window: WindowSpec
    train: TrainConfig


RECIPES: dict[str, dict[str, StageRecipe]] = {
    # tiny: ~0.06 s per step on 2 CPU cores; 10,000 steps reached 26.8 dB held-out PSNR on CoinRun
    "tiny": {"tokenizer": StageRecipe(WindowSpec(length=16, stride=4),
                                      TrainConfig(steps=10000, batch_size=8, lr=2e-3, warmup_steps=100,
                                                  ckpt_every=1000, log_every=50))},
    "small": {"tokenizer": StageRecipe(WindowSpec(length=16, stride=4),
                                       TrainConfig(steps=30000, batch_size=32, lr=1e-3, warmup_steps=500,
                                                   ckpt_every=2000, log_every=100))},
    "base": {"tokenizer": StageRecipe(WindowSpec(length=16, stride=2),
                                      TrainConfig(steps=100000, batch_size=64, lr=3e-4, warmup_steps=2000,
                                                  ckpt_every=5000, log_every=100))},
}


@dataclass
class GenieTrainConfig:
    """Train Genie's stages on an episode dataset (video only: recorded actions are never read)."""

    data: Path
    """Training dataset directory (made by `nextworld collect` or `nextworld ingest`)."""
    out: Path
    """Run directory; each stage trains into a subdirectory of it."""
    preset: Literal["tiny", "small", "base"] = "tiny"
    """Model and training sizes: tiny for 2 CPU cores in minutes, small and base for a GPU."""
    stage: Literal["all", "tokenizer"] = "all"
    """Train one stage, or all stages in order."""
    levels: str | None = None
    """Train only on episodes whose level lies in A:B (all episodes when unset)."""
    resume: bool = False
    """Continue the run in `out` exactly where its last checkpoint left it."""
    steps: int | None = None
    """Optimizer steps per stage (the preset's when unset)."""
    batch_size: int | None = None
    """Clips per optimizer step over all processes (the preset's when unset)."""
    lr: float | None = None
    """Peak learning rate (the preset's when unset)."""
    ckpt_every: int | None = None
    """Steps between checkpoints (the preset's when unset)."""
    seed: int = 0
    """Seed of initialisation, data order and sampling."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    num_workers: int = 0
    """DataLoader worker processes."""
    compile: bool = False
    """torch.compile the model."""
    progress: bool = True
    """Show a progress bar."""


def stage_train_config(cfg: GenieTrainConfig, stage: str, resuming: bool) -> TrainConfig:
    """The engine settings for ``stage``: the preset's (or, when resuming, the saved run's)
    with the overrides of ``cfg`` applied."""
    base = saved_train_config(cfg.out / stage) if resuming else RECIPES[cfg.preset][stage].train
    overrides = {name: getattr(cfg, name) for name in ("steps", "batch_size", "lr", "ckpt_every")
                 if getattr(cfg, name) is not None}
    return dataclasses.replace(base, seed=cfg.seed, device=cfg.device, num_workers=cfg.num_workers,
                               compile=cfg.compile, progress=cfg.progress, **overrides)


def _training_clips(cfg: GenieTrainConfig, window: WindowSpec) -> ClipDataset:
    data = EpisodeDataset(cfg.data)
    episodes = None
    if cfg.levels is not None:
        episodes = split_episodes(data, levels=parse_range(cfg.levels, "levels"))
        if not episodes:
            raise UserInputError(f"{cfg.data}: no episode has a level in {cfg.levels}")
    return ClipDataset(data, window, episodes=episodes, keys=("frames",))


@torch.no_grad()
def save_reconstructions(tokenizer: VideoTokenizer, clips: ClipDataset, path: Path, count: int = 8) -> Path:
    """A PNG of ``count`` frames (top row) over their reconstructions through the tokens (bottom row).

    The frames are the first of ``count`` clips evenly spaced over ``clips``.
    """
    chosen = np.linspace(0, len(clips) - 1, count).round().astype(int)
    frames = torch.stack([clips[int(i)]["frames"][0] for i in chosen])  # (count, H, W, C) uint8
    device = next(tokenizer.parameters()).device
    x = frames.to(device).permute(0, 3, 1, 2)[:, None].float() / 255  # (count, 1, C, H, W)
    recon = tokenizer.decode(tokenizer.encode(x))[:, 0].permute(0, 2, 3, 1)  # (count, H, W, C)
    recon = (recon * 255).round().to(torch.uint8).cpu().numpy()
    return save_image_grid([frames.numpy(), recon], path)


def _sample_tokenizer(clips: ClipDataset) -> SampleFn:
    return lambda model, step, samples_dir: save_reconstructions(model, clips, samples_dir / f"tokenizer-{step:07d}.png")


def train_genie(cfg: GenieTrainConfig) -> dict[str, FitResult]:
    """Train the requested stages in order; returns each stage's FitResult.

    Stops after a stage that was interrupted (Ctrl-C), so a later ``--resume`` picks up there.
    """
    if cfg.preset not in RECIPES:
        raise UserInputError(f"preset {cfg.preset!r}: unknown; choose one of {', '.join(RECIPES)}")
    stages = STAGES if cfg.stage == "all" else (cfg.stage,)
    results: dict[str, FitResult] = {}
    for stage in stages:
        recipe = RECIPES[cfg.preset][stage]
        clips = _training_clips(cfg, recipe.window)
        # a stage that never started before an interruption starts fresh on --resume
        resuming = cfg.resume and (cfg.out / stage).exists()
        train_cfg = stage_train_config(cfg, stage, resuming)
        model_config = TOKENIZER_PRESETS[cfg.preset]
        expected = (model_config.image_size, model_config.image_size, model_config.channels)
        if tuple(clips.data.frame_shape) != expected:
            raise UserInputError(f"{cfg.data}: frames are {list(clips.data.frame_shape)}, the {cfg.preset} "
                                 f"{stage} needs {list(expected)}")
        seed_everything(cfg.seed)
        model = VideoTokenizer(model_config)
        extra = {"data": {"path": str(cfg.data), "levels": cfg.levels, "window": dataclasses.asdict(recipe.window)},
                 "genie": {"preset": cfg.preset, "stage": stage}}
        results[stage] = fit(model, "genie-tokenizer", clips, train_cfg, cfg.out / stage, resume=resuming,
                             extra_config=extra, sample_fn=_sample_tokenizer(clips))
        if results[stage].interrupted:
            break
    return results
