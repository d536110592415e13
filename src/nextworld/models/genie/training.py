"""`nextworld train genie`: Genie's stages trained in order on the one training engine.

A Genie run directory holds one sub-run per stage (each a full engine run directory:
config.json, model.safetensors, training_state/, metrics.jsonl, tb/, samples/)::

    RUN/tokenizer/  RUN/lam/  RUN/dynamics/  RUN/world.json (once the dynamics exist)

The tokenizer and the latent action model both learn from pixels and do not depend on each
other. The dynamics stage reads the trained (frozen) tokenizer and latent action model of
the same run: each batch of frames becomes tokens and inferred latent actions on the fly
(``DynamicsInputs``), so nothing is precomputed and windows stay those of the dataset.

Genie learns from video alone: its clips are read with ``keys=("frames",)``, so recorded
actions never reach a model; evaluation uses them as ground truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from nextworld.atomic_files import write_json_atomic
from nextworld.data.episode_format import sha256_file
from nextworld.data.frames import to_model_frames
from nextworld.data.windows import ClipDataset, WindowSpec, open_clips
from nextworld.errors import UserInputError
from nextworld.models.base import config_from_dict, load_pretrained, read_checkpoint_config
from nextworld.models.genie.dynamics import DynamicsConfig, GenieDynamics
from nextworld.models.genie.latent_actions import LatentActionModel, modal_action_shifts
from nextworld.models.genie.pictures import save_dream_samples, save_lam_predictions, save_reconstructions
from nextworld.models.genie.presets import LAM_PRESETS, TOKENIZER_PRESETS, dynamics_config
from nextworld.models.genie.tokenizer import VideoTokenizer
from nextworld.models.genie.world import STAGE_FAMILIES, WORLD_FILE
from nextworld.train import FitResult, SampleFn, TrainConfig, fit, saved_train_config, seed_everything
from nextworld.train.checkpoint import read_state_json
from nextworld.train.config import with_command_options

STAGES = ("tokenizer", "lam", "dynamics")
"""Genie's stages in training order."""


@dataclass(frozen=True)
class StageRecipe:
    """How one stage is trained under a preset: its clips and its engine settings."""

    window: WindowSpec
    train: TrainConfig


def _recipe(length: int, stride: int, steps: int, batch: int, lr: float, warmup: int, ckpt: int,
            log: int) -> StageRecipe:
    return StageRecipe(WindowSpec(length=length, stride=stride),
                       TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=warmup,
                                   ckpt_every=ckpt, log_every=log))


RECIPES: dict[str, dict[str, StageRecipe]] = {
    # tiny: the three stages fit in an hour on 2 CPU cores (docs/genie.md). The tokenizer has
    # 12,000 steps (10,000 left it at 29.99-30.06 dB held-out); the LAM 2,000; the dynamics 2,000:
    # its motion-compensated step costs about 0.5 s, and the gain over the copy comes from the
    # compensation (500 steps already beat it), not from more dynamics steps
    "tiny": {"tokenizer": _recipe(16, 4, 12000, 8, 2e-3, 100, 1000, 50),
             "lam": _recipe(8, 2, 2000, 8, 1e-3, 100, 500, 50),
             "dynamics": _recipe(8, 2, 2000, 8, 1e-3, 200, 500, 50)},
    "small": {"tokenizer": _recipe(16, 4, 30000, 32, 1e-3, 500, 2000, 100),
              "lam": _recipe(16, 2, 30000, 32, 3e-4, 1000, 2000, 100),
              "dynamics": _recipe(16, 2, 50000, 32, 3e-4, 1000, 2000, 100)},
    "base": {"tokenizer": _recipe(16, 2, 100000, 64, 3e-4, 2000, 5000, 100),
             "lam": _recipe(16, 2, 100000, 64, 3e-4, 2000, 5000, 100),
             "dynamics": _recipe(16, 2, 150000, 64, 3e-4, 2000, 5000, 100)},
}
"""Per preset and stage: the clips (window length = the stage's ``max_frames``) and the engine settings."""


@dataclass
class GenieTrainConfig:
    """Train Genie's stages on an episode dataset (video only: recorded actions are never read)."""

    data: Path
    """Training dataset directory (made by `nextworld collect` or `nextworld ingest`)."""
    out: Path
    """Run directory; each stage trains into a subdirectory of it."""
    preset: Literal["tiny", "small", "base"] = "tiny"
    """Model and training sizes: tiny for 2 CPU cores in minutes, small and base for a GPU."""
    stage: Literal["all", "tokenizer", "lam", "dynamics"] = "all"
    """Train one stage, or all stages in order (dynamics needs this run's tokenizer and lam)."""
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
    return with_command_options(base, cfg, resuming)


class DynamicsInputs:
    """The dynamics stage's batch preparation: frames -> tokens (frozen tokenizer) and
    latent actions (frozen latent action model); with ``action_shifts`` (a motion-compensated
    dynamics), also ``previous``: each real frame moved by the shift its action names, tokenized.
    Deterministic, so resume stays exact."""

    def __init__(self, tokenizer: VideoTokenizer, lam: LatentActionModel,
                 action_shifts: torch.Tensor | None = None) -> None:
        self.tokenizer, self.lam = tokenizer.eval().requires_grad_(False), lam.eval().requires_grad_(False)
        self.action_shifts = action_shifts

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        frames = batch["frames"]
        if next(self.tokenizer.parameters()).device != frames.device:
            self.tokenizer.to(frames.device)
            self.lam.to(frames.device)
        x = to_model_frames(frames)  # (B, T, C, H, W)
        actions = self.lam.infer_actions(x)  # (B, T-1)
        tokens = self.tokenizer.encode(x)  # (B, T, h, w)
        batch = {"tokens": tokens}
        if self.action_shifts is not None:  # frame t+1 keeps codes of frame t moved by a_t's shift
            shifts = self.action_shifts.to(x.device)[actions]  # (B, T-1, 2)
            moved = self.tokenizer.encode_moved(x[:, :-1].flatten(0, 1), shifts.flatten(0, 1))
            batch["previous"] = torch.cat([tokens[:, :1], moved.unflatten(0, shifts.shape[:2])], dim=1)
        batch["actions"] = torch.cat([actions, actions.new_zeros(actions.shape[0], 1)], dim=1)  # the last one is unused
        return batch


def _load_stage(out: Path, stage: str) -> nn.Module:
    if not (out / stage / "model.safetensors").is_file():
        raise UserInputError(f"{out / stage}: no trained {stage} stage; the dynamics stage needs this run's "
                             f"tokenizer and lam (train them first: --stage {stage})")
    return load_pretrained(out / stage, STAGE_FAMILIES[stage])


def _stage_model(cfg: GenieTrainConfig, stage: str, resuming: bool) -> tuple[nn.Module, DynamicsInputs | None]:
    """The model a stage trains (and, for dynamics, its frozen inputs)."""
    if stage == "tokenizer":
        return VideoTokenizer(TOKENIZER_PRESETS[cfg.preset]), None
    if stage == "lam":
        return LatentActionModel(LAM_PRESETS[cfg.preset]), None
    tokenizer, lam = _load_stage(cfg.out, "tokenizer"), _load_stage(cfg.out, "lam")
    if resuming:  # the saved config, so a resume with other stage shapes is refused by name, not by shape
        saved = read_checkpoint_config(cfg.out / stage)
        config = config_from_dict(DynamicsConfig, saved["config"], f"{cfg.out / stage}/config.json")
        if saved.get("genie", {}).get("inputs") not in (None, stage_input_hashes(cfg.out)):
            raise UserInputError(f"{cfg.out / stage}: its tokenizer or lam has changed since it was trained "
                                 f"(their weights differ); train the dynamics into a new --out")
    else:
        shifts = None if lam.action_shifts() is None else _measured_shifts(cfg, lam, tokenizer.config.frame_shape)
        config = dynamics_config(cfg.preset, tokenizer.config, tokenizer.num_codes, lam.num_actions, shifts)
    if config.max_frames > lam.config.max_frames:
        raise UserInputError(f"{cfg.out / 'lam'}: reads clips of at most {lam.config.max_frames} frames, the "
                             f"{cfg.preset} dynamics trains on {config.max_frames}; use the --preset the run's "
                             f"lam was trained with")
    return GenieDynamics(config), DynamicsInputs(tokenizer, lam, config.shift_table())


SHIFT_CLIPS = 2048
"""Training clips (evenly spaced) on which each latent action's camera shift is measured."""


def _measured_shifts(cfg: GenieTrainConfig, lam: LatentActionModel, frame_shape: tuple[int, ...]) -> torch.Tensor:
    """The shift each latent action names for a motion-compensated dynamics: the most common camera
    shift of the training transitions it labels (``modal_action_shifts``), on ``SHIFT_CLIPS`` clips."""
    window = dataclasses.replace(RECIPES[cfg.preset]["dynamics"].window, length=lam.config.max_frames)
    # the stage opens (and fully verifies) the same dataset right after this
    clips = open_clips(cfg.data, window, levels=cfg.levels, keys=("frames",), frame_shape=frame_shape, verify="lazy")
    chosen = torch.linspace(0, len(clips) - 1, min(SHIFT_CLIPS, len(clips))).round().long().unique().tolist()
    batches = (to_model_frames(torch.stack([clips[i]["frames"] for i in chosen[start:start + 64]]))
               for start in range(0, len(chosen), 64))
    return modal_action_shifts(lam.eval(), batches)


def stage_input_hashes(out: Path) -> dict[str, str]:
    """sha256 of the tokenizer's and the LAM's weights in run ``out``: what the dynamics learned on."""
    return {stage: sha256_file(out / stage / "model.safetensors") for stage in ("tokenizer", "lam")}


def _refuse_retraining_under_dynamics(cfg: GenieTrainConfig, stage: str, train_cfg: TrainConfig) -> None:
    """An earlier stage may not train further once a dynamics model has learned on its outputs."""
    if stage == "dynamics" or not (cfg.out / "dynamics").exists():
        return
    done = read_state_json(cfg.out / stage, required={"step": int})["step"] if (cfg.out / stage).exists() else 0
    if train_cfg.steps > done:
        raise UserInputError(f"{cfg.out / stage}: the dynamics in {cfg.out / 'dynamics'} learned on this {stage}'s "
                             f"outputs; training it further would silently break that world; train into a new --out")


def _stage_window(cfg: GenieTrainConfig, stage: str, model: nn.Module) -> WindowSpec:
    window = RECIPES[cfg.preset][stage].window
    if stage != "tokenizer":  # a clip is exactly the model's context
        window = dataclasses.replace(window, length=model.config.max_frames)
    return window


def _sampler(stage: str, clips: ClipDataset, inputs: DynamicsInputs | None) -> SampleFn:
    if stage == "tokenizer":
        return lambda model, step, d: save_reconstructions(model, clips, d / f"tokenizer-{step:07d}.png")
    if stage == "lam":
        return lambda model, step, d: save_lam_predictions(model, clips, d / f"lam-{step:07d}.png")
    assert inputs is not None
    return lambda model, step, d: save_dream_samples(model, inputs.tokenizer, inputs.lam, clips,
                                                     d / f"dynamics-{step:07d}.png")


def write_world_file(out: Path) -> None:
    """Mark a run whose three stages exist as a playable Genie world."""
    write_json_atomic(out / WORLD_FILE, {"format": "nextworld-world", "family": "genie",
                                         "stages": {stage: stage for stage in STAGE_FAMILIES}})


def train_genie(cfg: GenieTrainConfig) -> dict[str, FitResult]:
    """Train the requested stages in order; returns each stage's FitResult.

    Stops after a stage that was interrupted (Ctrl-C), so a later ``--resume`` picks up there.
    With ``--resume``, stages already finished are skipped.
    """
    if cfg.preset not in RECIPES:
        raise UserInputError(f"preset {cfg.preset!r}: unknown; choose one of {', '.join(RECIPES)}")
    stages = STAGES if cfg.stage == "all" else (cfg.stage,)
    results: dict[str, FitResult] = {}
    frame_shape = TOKENIZER_PRESETS[cfg.preset].frame_shape
    for stage in stages:
        # a stage that never started before an interruption starts fresh on --resume
        resuming = cfg.resume and (cfg.out / stage).exists()
        train_cfg = stage_train_config(cfg, stage, resuming)
        _refuse_retraining_under_dynamics(cfg, stage, train_cfg)
        seed_everything(train_cfg.seed)
        model, inputs = _stage_model(cfg, stage, resuming)
        window = _stage_window(cfg, stage, model)
        clips = open_clips(cfg.data, window, levels=cfg.levels, keys=("frames",), frame_shape=frame_shape)
        genie: dict = {"preset": cfg.preset, "stage": stage}
        if stage == "dynamics":
            genie["inputs"] = stage_input_hashes(cfg.out)
        extra = {"data": {"path": str(cfg.data), "levels": cfg.levels, "window": dataclasses.asdict(window)},
                 "genie": genie}
        results[stage] = fit(model, STAGE_FAMILIES[stage], clips, train_cfg, cfg.out / stage, resume=resuming,
                             extra_config=extra, sample_fn=_sampler(stage, clips, inputs), prepare=inputs)
        if stage == "dynamics":
            write_world_file(cfg.out)
        if results[stage].interrupted:
            break
    return results
