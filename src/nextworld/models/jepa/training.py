"""`nextworld train jepa`: a JEPA trained on the one training engine.

Two models share the verb (``--model``):

- ``world`` (default): the action-conditioned world model of ``world_model.py`` (family
  ``jepa``), trained on clips of ``rollout_steps + 1`` frames with their actions. Its action
  space is read from the dataset, so a planner later knows what it may ask. ``--objective
  generative`` trains the pixel-predicting control at the same sizes.
- ``video``: the self-supervised video JEPA of ``video_jepa.py`` (family ``jepa-video``); it
  reads frames only, so any dataset, with or without actions, will do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.windows import WindowSpec, open_clips
from nextworld.errors import UserInputError
from nextworld.models.base import load_pretrained
from nextworld.models.jepa.video_jepa import VIDEO_JEPA_PRESETS, VideoJEPA
from nextworld.models.jepa.world_model import JEPAWorldConfig, JEPAWorldModel
from nextworld.train import FitResult, TrainConfig, fit, saved_train_config, seed_everything
from nextworld.train.config import with_command_options

WORLD_PRESETS: dict[str, JEPAWorldConfig] = {
    "tiny": JEPAWorldConfig(input_pool=2, widths=(16, 32, 32), embed_dim=64, predictor_hidden=128, predictor_depth=2,
                            prediction_weight=10.0,
                            rollout_steps=8),
    "small": JEPAWorldConfig(widths=(32, 64, 64), embed_dim=128, predictor_hidden=512, predictor_depth=2,
                             rollout_steps=16),
    "base": JEPAWorldConfig(widths=(32, 64, 128, 128), embed_dim=256, predictor_hidden=1024, predictor_depth=3,
                            rollout_steps=16),
}
"""Sizes of the action-conditioned world model per preset (the action fields come from the data)."""

RECIPES: dict[str, dict[str, TrainConfig]] = {
    "tiny": {"world": TrainConfig(steps=6000, batch_size=64, lr=1e-3, warmup_steps=200, ckpt_every=1000,
                                  log_every=50),
             "video": TrainConfig(steps=3000, batch_size=8, lr=5e-4, warmup_steps=200, ckpt_every=500,
                                  log_every=50)},
    "small": {"world": TrainConfig(steps=30000, batch_size=128, lr=1e-3, warmup_steps=1000, ckpt_every=2000,
                                   log_every=100),
              "video": TrainConfig(steps=30000, batch_size=32, lr=5e-4, warmup_steps=1000, ckpt_every=2000,
                                   log_every=100)},
    "base": {"world": TrainConfig(steps=100000, batch_size=256, lr=5e-4, warmup_steps=2000, ckpt_every=5000,
                                  log_every=100),
             "video": TrainConfig(steps=100000, batch_size=64, lr=3e-4, warmup_steps=2000, ckpt_every=5000,
                                  log_every=100)},
}
"""Engine settings per preset and model."""

FAMILIES = {"world": "jepa", "video": "jepa-video"}
"""The registered family each model trains as."""


@dataclass
class JEPATrainConfig:
    """Train a JEPA: an action-conditioned world model (default) or a self-supervised video JEPA."""

    data: Path
    """Training dataset directory (e.g. from `nextworld collect tworooms`)."""
    out: Path
    """Run directory."""
    preset: Literal["tiny", "small", "base"] = "tiny"
    """Model and training sizes: tiny for 2 CPU cores in minutes, small and base for a GPU."""
    model: Literal["world", "video"] = "world"
    """``world``: action-conditioned, for planning; ``video``: self-supervised on frames alone."""
    objective: Literal["jepa", "generative"] = "jepa"
    """world: predict embeddings (jepa) or pixels through a decoder (generative, the control)."""
    regularizer: Literal["vicreg", "ema", "sigreg"] | None = None
    """world/jepa: collapse prevention (the preset's when unset)."""
    reward_head: bool = False
    """world: also learn to predict rewards (a planner can then maximise them)."""
    levels: str | None = None
    """Train only on episodes whose level lies in A:B (all episodes when unset)."""
    resume: bool = False
    """Continue the run in `out` exactly where its last checkpoint left it."""
    steps: int | None = None
    """Optimizer steps (the preset's when unset)."""
    batch_size: int | None = None
    """Clips per optimizer step over all processes (the preset's when unset)."""
    lr: float | None = None
    """Peak learning rate (the preset's when unset)."""
    ckpt_every: int | None = None
    """Steps between checkpoints (the preset's when unset)."""
    seed: int | None = None
    """Seed of initialisation and data order (0 for a new run; a resumed run keeps its own)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    num_workers: int = 0
    """DataLoader worker processes."""
    compile: bool = False
    """torch.compile the model."""
    progress: bool = True
    """Show a progress bar."""


def _train_config(cfg: JEPATrainConfig, resuming: bool) -> TrainConfig:
    base = saved_train_config(cfg.out) if resuming else RECIPES[cfg.preset][cfg.model]
    return with_command_options(base, cfg, resuming)


def action_fields(space: gym.Space | None, data: Path) -> dict:
    """The JEPAWorldConfig action fields for a dataset's action space."""
    if space is None:
        raise UserInputError(f"{data}: the dataset has no actions; an action-conditioned JEPA needs them "
                             "(train the self-supervised one with --model video)")
    if isinstance(space, gym.spaces.Discrete):
        return {"action_kind": "discrete", "action_dim": int(space.n), "action_low": (), "action_high": ()}
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return {"action_kind": "continuous", "action_dim": int(space.shape[0]),
                "action_low": tuple(float(v) for v in np.asarray(space.low)),
                "action_high": tuple(float(v) for v in np.asarray(space.high))}
    raise UserInputError(f"{data}: action space {space} is not supported (Discrete or a 1-D Box)")


def _model(cfg: JEPATrainConfig, resuming: bool) -> JEPAWorldModel | VideoJEPA:
    """The model to train: a resumed run's own (its config and family, so a resume under another
    --model is refused by name), or a new one from the preset and, for ``world``, the data's actions."""
    if resuming:
        return load_pretrained(cfg.out, family=FAMILIES[cfg.model])
    if cfg.model == "video":
        return VideoJEPA(VIDEO_JEPA_PRESETS[cfg.preset])
    frame_shape = WORLD_PRESETS[cfg.preset].frame_shape
    data = EpisodeDataset(cfg.data)
    if tuple(data.meta["frame_shape"]) != tuple(frame_shape):
        raise UserInputError(f"{cfg.data}: frames are {tuple(data.meta['frame_shape'])}, "
                             f"the {cfg.preset} preset reads {tuple(frame_shape)}")
    fields = action_fields(data.action_space, cfg.data)
    if cfg.regularizer is not None:
        fields["regularizer"] = cfg.regularizer
    return JEPAWorldModel(dataclasses.replace(WORLD_PRESETS[cfg.preset], objective=cfg.objective,
                                              reward_head=cfg.reward_head, **fields))


def _check(cfg: JEPATrainConfig) -> None:
    if cfg.model == "video" and (cfg.objective != "jepa" or cfg.regularizer is not None or cfg.reward_head):
        raise UserInputError("--objective, --regularizer and --reward-head apply to --model world only")


def train_jepa(cfg: JEPATrainConfig) -> FitResult:
    """Train the JEPA ``cfg`` describes into ``cfg.out``; returns the engine's FitResult."""
    _check(cfg)
    resuming = cfg.resume and cfg.out.exists()
    train_cfg = _train_config(cfg, resuming)
    seed_everything(train_cfg.seed)
    model = _model(cfg, resuming)
    if cfg.model == "world":
        window = WindowSpec(length=model.config.rollout_steps + 1, stride=1)
        keys = ("frames", "actions", "rewards")
    else:
        window = WindowSpec(length=model.config.frames, stride=2)
        keys = ("frames",)
    clips = open_clips(cfg.data, window, levels=cfg.levels, keys=keys, frame_shape=model.config.frame_shape)
    extra = {"data": {"path": str(cfg.data), "levels": cfg.levels, "window": dataclasses.asdict(window)},
             "jepa": {"preset": cfg.preset, "model": cfg.model}}
    return fit(model, FAMILIES[cfg.model], clips, train_cfg, cfg.out, resume=resuming, extra_config=extra)
