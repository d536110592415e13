"""`nextworld eval`: measure a trained run on held-out data and write the metrics as JSON.

A JEPA run (families ``jepa`` and ``jepa-video``) gives collapse and linear-probe metrics
(``eval/jepa_eval.py``); planning success is measured by `nextworld plan`. A Dreamer run is
played in ``--env`` (``agents/dreamer.evaluate_agent``): ``mean_return``, ``success_rate``,
``random_mean_return`` (a uniform random policy on the same seeds), ``env_steps`` and
``env_steps_per_second`` (of its training).

The run decides what is measured (DESIGN.md, "Metric definitions"). A playable Genie world
(a run directory with ``world.json``, or a shipped world's name) gives the tokenizer's
``tokenizer_psnr``, ``tokenizer_ssim`` and ``codebook_usage`` and everything of
``genie_eval.py``: ``psnr_t1/t4/t10``, ``delta_psnr_t4``, ``lam_codebook_usage``,
``action_nmi``, the latent -> real ``action_map`` with its accuracy and
``frames_per_second``. A Genie run whose dynamics are not trained yet (or a bare
tokenizer checkpoint) gives the tokenizer's keys only. All of them are measured on the
same held-out clips of 11 frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from nextworld.atomic_files import write_json_atomic
from nextworld.data.episodes import EpisodeDataset
from nextworld.data.frames import save_image_grid
from nextworld.data.windows import WindowSpec, open_clips
from nextworld.errors import UserInputError
from nextworld.eval.action_map import check_labelled_fraction
from nextworld.eval.genie_eval import CLIP_LENGTH, evaluate_genie
from nextworld.eval.jepa_eval import evaluate_jepa_world, evaluate_video_jepa
from nextworld.eval.tokenizer_eval import evaluate_tokenizer
from nextworld.models.base import CONFIG_NAME, check_action_space, load_pretrained, read_checkpoint_config
from nextworld.models.genie.pictures import save_reconstructions
from nextworld.models.genie.world import WORLD_FILE
from nextworld.play.world import load_world_model
from nextworld.train.distributed import resolve_device
from nextworld.zoo import resolve_model, resolve_world

EVAL_WINDOW = WindowSpec(length=CLIP_LENGTH, stride=CLIP_LENGTH)
"""Held-out clips: 11 frames (a prompt frame and the ten a rollout is compared with), non-overlapping."""


@dataclass
class EvalConfig:
    """Evaluate a trained run on held-out data and write its metrics as JSON."""

    run: Annotated[Path, tyro.conf.Positional]
    """Run directory (from `nextworld train`), checkpoint directory or shipped model name."""
    data: Path | None = None
    """Held-out dataset directory (e.g. CoinRun levels >= 100,000); Genie and JEPA runs."""
    env: str | None = None
    """Dreamer runs: the env to play (gym:<env-id>, coinrun or procgen:<game>)."""
    episodes: int = 20
    """Dreamer runs: episodes to play, with the agent and with a uniform random policy on the same seeds."""
    env_seed: int = 100_000
    """Dreamer runs: episode i uses seed (Procgen: level) env_seed + i; keep it off the training seeds."""
    policy: Literal["sample", "mode"] = "sample"
    """Dreamer runs: sample the actor's actions (as in training) or take the most likely one."""
    json: Path | None = None
    """Write the metrics here (and pictures of reconstructions and rollouts beside it)."""
    levels: str | None = None
    """Evaluate only episodes whose level lies in A:B (all when unset)."""
    max_clips: int = 64
    """Held-out 11-frame clips to reconstruct and dream at most (evenly spaced over the data)."""
    action_clips: int = 1024
    """Held-out 11-frame clips whose latent actions are compared with the real ones, at most."""
    labelled_fraction: float = 0.01
    """Share of those clips' frames (the first ones) labelled for the latent -> real action map; at most 0.01."""
    batch_size: int = 16
    """Clips per batch."""
    seed: int = 0
    """Seeds the sampling, the random latent actions of delta_psnr_t4 and the timed play."""
    temperature: float | None = None
    """Sampling temperature of the dreams (the world's own when unset; 0: most likely tokens)."""
    sample_steps: int | None = None
    """MaskGIT iterations per dreamed frame (the world's own when unset)."""
    keep_bias: float | None = None
    """Added to a motion-compensated world's "keep" log-probability (the world's own when unset)."""
    fps_steps: int = 32
    """Steps of batch-1 play timed for frames_per_second."""
    label: str = "position"
    """JEPA runs: the hidden state label the linear probes read (Two-Rooms records ``position``)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    progress: bool = True
    """Show progress bars."""


JEPA_FAMILIES = ("jepa", "jepa-video")
"""Families evaluated by probes of their representations (``eval/jepa_eval.py``)."""


def _family(run: Path) -> str | None:
    """The family of the checkpoint ``run`` (a directory or a shipped model's name) when it has one
    config.json (JEPA, Dreamer), else None (a Genie run or world)."""
    if run.is_dir() and not (run / CONFIG_NAME).is_file():
        return None
    try:
        directory = resolve_model(run)
    except UserInputError:
        return None
    if not (directory / CONFIG_NAME).is_file():
        return None
    family = read_checkpoint_config(directory)["family"]
    return family if family in (*JEPA_FAMILIES, "dreamer") else None


def evaluate_dreamer(cfg: EvalConfig) -> dict[str, Any]:
    """A Dreamer agent played in ``cfg.env`` (``agents/dreamer.evaluate_agent``)."""
    from nextworld.agents.dreamer import evaluate_agent

    if cfg.env is None:
        raise UserInputError(f"{cfg.run}: a Dreamer run is evaluated in an env; pass --env (e.g. gym:MiniGrid-Empty-8x8-v0)")
    if cfg.data is not None:
        raise UserInputError("--data: a Dreamer run is evaluated by playing --env, not on a dataset")
    if cfg.episodes < 1:
        raise UserInputError(f"episodes {cfg.episodes}: must be at least 1")
    metrics = evaluate_agent(cfg.run, cfg.env, cfg.episodes, cfg.env_seed, mode=cfg.policy == "mode",
                             device=cfg.device)
    metrics["run"] = str(cfg.run)
    if cfg.json is not None:
        write_json_atomic(cfg.json, metrics)
    return metrics


def evaluate_jepa(cfg: EvalConfig, family: str) -> dict[str, Any]:
    """Collapse and probe metrics of a JEPA run on ``cfg.data`` (see ``eval/jepa_eval.py``)."""
    unused = [f"--{name.replace('_', '-')}" for name in ("levels", "temperature", "sample_steps", "keep_bias")
              if getattr(cfg, name) is not None]
    if unused:
        raise UserInputError(f"{', '.join(unused)}: Genie options; a JEPA run is probed on every episode of --data")
    device = resolve_device(cfg.device)
    model = load_pretrained(resolve_model(cfg.run), family=family).to(device).eval()
    data = EpisodeDataset(cfg.data)
    if family == "jepa":
        check_action_space(model.action_space, data.action_space, f"dataset {cfg.data}")
    if cfg.label not in data.label_names:
        raise UserInputError(f"{cfg.data}: no hidden label {cfg.label!r} to probe "
                             f"(it has: {', '.join(data.label_names) or 'none'})")
    if tuple(data.meta["frame_shape"]) != tuple(model.config.frame_shape):
        raise UserInputError(f"{cfg.data}: frames are {tuple(data.meta['frame_shape'])}, the model reads "
                             f"{tuple(model.config.frame_shape)}")
    if family == "jepa":
        metrics = evaluate_jepa_world(model, data, label=cfg.label, device=device)
    else:
        metrics = evaluate_video_jepa(model, data, label=cfg.label, device=device)
    metrics.update({"run": str(cfg.run), "data": str(cfg.data), "family": family, "device": str(device)})
    if cfg.json is not None:
        write_json_atomic(cfg.json, metrics)
    return metrics


def _world_dir(run: Path) -> Path | None:
    """The directory of the playable world ``run`` names, or None for a run with no world yet."""
    directory = run if run.is_dir() else resolve_world(run)  # a shipped world's name
    return directory if (directory / WORLD_FILE).is_file() else None


def _tokenizer_dir(run: Path) -> Path:
    """The tokenizer checkpoint of a Genie run, or the run itself if it is one."""
    if (run / "tokenizer" / CONFIG_NAME).is_file():
        return run / "tokenizer"
    family = read_checkpoint_config(run)["family"]
    if family != "genie-tokenizer":
        raise UserInputError(f"{run}: a {family!r} checkpoint; eval knows Genie runs so far")
    return run


def _check(cfg: EvalConfig) -> None:
    for name in ("max_clips", "action_clips", "batch_size", "fps_steps"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"{name} {getattr(cfg, name)}: must be at least 1")
    check_labelled_fraction(cfg.labelled_fraction)
    if cfg.temperature is not None and cfg.temperature < 0:
        raise UserInputError(f"temperature {cfg.temperature}: must be at least 0")
    if cfg.sample_steps is not None and cfg.sample_steps < 1:
        raise UserInputError(f"sample_steps {cfg.sample_steps}: must be at least 1")


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Measure ``cfg.run`` on ``cfg.data``; returns the metrics (also written to ``cfg.json``)."""
    _check(cfg)
    family = _family(cfg.run)
    if family == "dreamer":
        return evaluate_dreamer(cfg)
    if cfg.env is not None:
        raise UserInputError(f"--env: only Dreamer runs are evaluated in an env; {cfg.run} is evaluated on --data")
    if cfg.data is None:
        raise UserInputError(f"{cfg.run}: pass --data, a held-out dataset directory")
    if family is not None:
        return evaluate_jepa(cfg, family)
    device = resolve_device(cfg.device)
    world_dir = _world_dir(cfg.run)
    if world_dir is not None:
        world = load_world_model(world_dir, str(device))
        world.set_sampling(cfg.sample_steps, cfg.temperature, cfg.keep_bias)
        tokenizer = world.tokenizer
    else:
        world = None
        tokenizer = load_pretrained(_tokenizer_dir(cfg.run), family="genie-tokenizer").to(device)
    keys = ("frames",) if world is None else ("frames", "actions")
    clips = open_clips(cfg.data, EVAL_WINDOW, levels=cfg.levels, keys=keys,
                       frame_shape=tokenizer.config.frame_shape, verify="lazy")
    metrics: dict[str, Any] = evaluate_tokenizer(tokenizer, clips, max_clips=cfg.max_clips,
                                                 batch_size=cfg.batch_size, device=device)
    rows = None
    if world is not None:
        result = evaluate_genie(world, clips, max_clips=cfg.max_clips, action_clips=cfg.action_clips,
                                batch_size=cfg.batch_size, labelled_fraction=cfg.labelled_fraction,
                                seed=cfg.seed, fps_steps=cfg.fps_steps, progress=cfg.progress)
        metrics.update(result.metrics)
        rows = result.picture_rows
    metrics.update({"run": str(cfg.run), "data": str(cfg.data), "levels": cfg.levels,
                    "num_clips": min(cfg.max_clips, len(clips)), "device": str(device)})
    if cfg.json is not None:
        picture = cfg.json.with_name(cfg.json.stem + "_reconstructions.png")
        save_reconstructions(tokenizer, clips, picture)
        metrics["reconstructions"] = str(picture)
        if rows is not None:
            metrics["rollouts"] = str(save_image_grid(rows, cfg.json.with_name(cfg.json.stem + "_rollouts.png")))
        write_json_atomic(cfg.json, metrics)
    return metrics
