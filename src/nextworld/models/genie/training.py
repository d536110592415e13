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

from nextworld.data.windows import ClipDataset, WindowSpec, open_clips
from nextworld.errors import UserInputError
from nextworld.models.genie.pictures import save_reconstructions
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
    seed: int | None = None
    """Seed of initialisation, data order and sampling (0 for a new run; a resumed run keeps its own)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    num_workers: int = 0
    """DataLoader worker processes."""
    compile: bool = False
    """torch.compile the model."""
    progress: bool = True
    """Show a progress bar."""


def stage_train_config(cfg: GenieTrainConfig, stage: str, resuming: bool) -> TrainConfig:
    """The engine settings for ``stage``: the preset's for a new run, the saved run's when
    resuming (so a resume continues exactly), with the options given in ``cfg`` applied."""
    base = saved_train_config(cfg.out / stage) if resuming else RECIPES[cfg.preset][stage].train
    overrides = {name: getattr(cfg, name) for name in ("steps", "batch_size", "lr", "ckpt_every", "seed")
                 if getattr(cfg, name) is not None}
    if not resuming:
        overrides.setdefault("seed", 0)
    return dataclasses.replace(base, device=cfg.device, num_workers=cfg.num_workers, compile=cfg.compile,
                               progress=cfg.progress, **overrides)


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
        model_config = TOKENIZER_PRESETS[cfg.preset]
        clips = open_clips(cfg.data, recipe.window, levels=cfg.levels, keys=("frames",),
                           frame_shape=model_config.frame_shape)
        # a stage that never started before an interruption starts fresh on --resume
        resuming = cfg.resume and (cfg.out / stage).exists()
        train_cfg = stage_train_config(cfg, stage, resuming)
        seed_everything(train_cfg.seed)
        model = VideoTokenizer(model_config)
        extra = {"data": {"path": str(cfg.data), "levels": cfg.levels, "window": dataclasses.asdict(recipe.window)},
                 "genie": {"preset": cfg.preset, "stage": stage}}
        results[stage] = fit(model, "genie-tokenizer", clips, train_cfg, cfg.out / stage, resume=resuming,
                             extra_config=extra, sample_fn=_sample_tokenizer(clips))
        if results[stage].interrupted:
            break
    return results
