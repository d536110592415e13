"""What a Genie world is worth: its dreams against real held-out clips, its latent actions
against the recorded ones, and its speed (DESIGN.md, "Metric definitions").

Every number comes from held-out clips of ``CLIP_LENGTH`` = 11 frames, evenly spaced over
the data (the same clips for the same data, so two worlds see identical frames):

- ``psnr_t1``, ``psnr_t4``, ``psnr_t10``: the world is prompted with a clip's first real
  frame and dreams the next ten, each under the latent action that the world's latent
  action model reads off the real clip for that transition; PSNR of dreamed frame K
  against real frame K. The world slides its context when its dynamics model holds fewer
  than 11 frames (``GenieWorld.step``).
- ``copy_psnr_t1``, ``copy_psnr_t4``, ``copy_psnr_t10``: the same clips and PSNR for a world
  that never moves: the prompt frame, through the tokenizer, repeated. Not a DESIGN.md metric;
  the reference a world has to beat on data where the view often stays still.
- ``delta_psnr_t4``: ``psnr_t4`` minus the PSNR at t = 4 of dreams from the same prompts
  under uniformly random latent actions, with the sampler's random stream replayed, so the
  two dreams differ only in their actions.
- ``lam_codebook_usage``, ``action_nmi`` and the latent -> real action map
  (``action_map.py``): over the transitions of a larger set of clips, which only the latent
  action model reads. Row t of the data holds frame t and the action a_t taken after it,
  so the latent action of transition t -> t+1 pairs with ``actions[t]``.
- ``frames_per_second``: ``World.step`` at batch 1 on the world's own device, timed over
  ``fps_steps`` steps after two unmeasured ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nextworld.data.frames import to_model_frames, to_stored_frames
from nextworld.data.windows import ClipDataset
from nextworld.eval.action_map import action_map_report, labelled_count
from nextworld.eval.metrics import codebook_usage, normalised_mutual_information, psnr
from nextworld.models.genie.world import GenieWorld
from nextworld.play.world import World

ROLLOUT_STEPS = (1, 4, 10)
"""The K of the reported ``psnr_tK``."""
DELTA_STEP = 4
"""The t of ``delta_psnr_t4`` (Genie's ΔtPSNR)."""
CLIP_LENGTH = max(ROLLOUT_STEPS) + 1
"""Frames per evaluated clip: one prompt frame and the frames the longest rollout is compared with."""
FPS_WARMUP_STEPS = 2
PICTURE_CLIPS = 4


def spaced_indices(num_items: int, count: int) -> np.ndarray:
    """``min(count, num_items)`` distinct indices evenly spaced over ``range(num_items)``, ascending."""
    return np.linspace(0, num_items - 1, min(count, num_items)).round().astype(int)


@dataclass
class GenieEvalResult:
    metrics: dict[str, Any]
    """The metrics named in the module docstring, and the counts behind them."""
    picture_rows: list[np.ndarray]
    """uint8 [T-1, H, W, C] rows for a picture: for a few clips, real frames 1..T-1 over the dreamed ones."""


def _frames(clips: ClipDataset, indices: np.ndarray, device: torch.device) -> torch.Tensor:
    """float [B, T, C, H, W] in [0, 1]: the frames of clips ``indices``."""
    return to_model_frames(torch.stack([clips[int(i)]["frames"] for i in indices]).to(device))


@torch.no_grad()
def copy_baseline(world: GenieWorld, clips: torch.Tensor) -> torch.Tensor:
    """PSNR [B, T-1] of a world that never moves: each clip's first frame, through the world's
    tokenizer, against its real frames 1..T-1 (clips float [B, T, C, H, W] in [0, 1])."""
    still = world.tokenizer.decode(world.tokenizer.encode(clips[:, :1]))  # (B, 1, C, H, W)
    return psnr(still.expand_as(clips[:, 1:]), clips[:, 1:])


@torch.no_grad()
def rollout_metrics(world: GenieWorld, clips: ClipDataset, indices: np.ndarray, *, batch_size: int, seed: int,
                    progress: Progress) -> tuple[dict[str, float], list[np.ndarray]]:
    """``psnr_tK``, ``copy_psnr_tK`` and ``delta_psnr_t4`` over clips ``indices``; and picture rows of a few of them.

    Sampling draws from one generator seeded with ``seed``; the random-action dreams of a
    batch replay the stream that its inferred-action dreams drew.
    """
    device, n = world.device, len(indices)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    action_generator = torch.Generator().manual_seed(seed)  # on the CPU: the random latent actions
    psnr_sums = torch.zeros(CLIP_LENGTH - 1, dtype=torch.float64)  # summed over clips, per step
    copy_sums = torch.zeros(CLIP_LENGTH - 1, dtype=torch.float64)  # the same for the repeated prompt
    random_sum = 0.0
    shown = set(spaced_indices(n, PICTURE_CLIPS).tolist())
    rows: list[np.ndarray] = []
    task = progress.add_task("dreams", total=n)
    for start in range(0, n, batch_size):
        x = _frames(clips, indices[start:start + batch_size], device)  # (B, T, C, H, W)
        b = x.shape[0]
        actions = world.infer_actions(x)  # (B, T-1): actions[:, k] leads from frame k to k+1
        random_actions = torch.randint(world.action_space.n, (b, DELTA_STEP), generator=action_generator)
        before = generator.get_state()
        dreamed = world.rollout(x[:, :1], actions, generator)  # (B, T-1, C, H, W): dreamed[:, k-1] is frame k
        after = generator.get_state()
        generator.set_state(before)
        dreamed_random = world.rollout(x[:, :1], random_actions.to(device), generator)  # (B, DELTA_STEP, C, H, W)
        generator.set_state(after)
        psnr_sums += psnr(dreamed, x[:, 1:]).sum(dim=0).double().cpu()
        copy_sums += copy_baseline(world, x).sum(dim=0).double().cpu()
        random_sum += float(psnr(dreamed_random[:, -1], x[:, DELTA_STEP]).sum())
        for i in range(b):
            if start + i in shown:
                rows += [to_stored_frames(x[i, 1:]).cpu().numpy(), to_stored_frames(dreamed[i]).cpu().numpy()]
        progress.advance(task, b)
    mean = (psnr_sums / n).tolist()  # mean[k-1]: PSNR of dreamed frame k
    metrics = {f"psnr_t{k}": mean[k - 1] for k in ROLLOUT_STEPS}
    metrics.update({f"copy_psnr_t{k}": float(copy_sums[k - 1] / n) for k in ROLLOUT_STEPS})
    metrics["delta_psnr_t4"] = mean[DELTA_STEP - 1] - random_sum / n
    return metrics, rows


@torch.no_grad()
def latent_action_metrics(world: GenieWorld, clips: ClipDataset, indices: np.ndarray, *, batch_size: int,
                          labelled_fraction: float, real_actions: bool, progress: Progress) -> dict[str, Any]:
    """The latent actions of every transition of clips ``indices``, against the recorded ones.

    Returns ``lam_codebook_usage`` and ``action_transitions``; with ``real_actions`` (the
    clips carry discrete ``actions``) also ``action_nmi`` and, when the label budget
    (``labelled_fraction`` of the clips' frames) allows at least one labelled transition,
    the keys of ``action_map_report``, the first clips (in the data's order) labelled.
    """
    latent, real = [], []
    task = progress.add_task("latent actions", total=len(indices))
    for start in range(0, len(indices), batch_size):
        chosen = indices[start:start + batch_size]
        latent.append(world.infer_actions(_frames(clips, chosen, world.device)).cpu())  # (B, T-1)
        if real_actions:
            # actions[t] is taken after frame t: the transition t -> t+1, for t < T-1
            real.append(torch.stack([clips[int(i)]["actions"][:-1] for i in chosen]))  # (B, T-1)
        progress.advance(task, len(chosen))
    latent_all = torch.cat(latent).flatten()  # clip-major, so the data's order
    num_latent = int(world.action_space.n)
    metrics: dict[str, Any] = {"lam_codebook_usage": float(codebook_usage(latent_all, num_latent)),
                               "action_transitions": latent_all.numel()}
    if real_actions:
        real_all = torch.cat(real).flatten().numpy()
        metrics["action_nmi"] = normalised_mutual_information(latent_all.numpy(), real_all)
        labelled = labelled_count(len(indices) * CLIP_LENGTH, labelled_fraction)
        if 1 <= labelled < latent_all.numel():
            metrics.update(action_map_report(latent_all.numpy(), real_all, num_latent, labelled))
    return metrics


def frames_per_second(world: GenieWorld, prompt: np.ndarray, *, steps: int, seed: int) -> float:
    """Frames per second of interactive play: ``World.step`` at batch 1, actions cycling.

    Args:
        prompt: uint8 [H, W, C], the frame play starts from.
        steps: timed steps, after ``FPS_WARMUP_STEPS`` untimed ones.
    """
    player = World(world, seed=seed)
    player.reset(prompt)
    n = player.num_actions
    for i in range(FPS_WARMUP_STEPS):
        player.step(i % n)
    start = time.perf_counter()
    for i in range(steps):
        player.step(i % n)  # returns pixels on the CPU, so the device has finished the frame
    return steps / (time.perf_counter() - start)


def evaluate_genie(world: GenieWorld, clips: ClipDataset, *, max_clips: int = 64, action_clips: int = 1024,
                   batch_size: int = 16, labelled_fraction: float = 0.01, seed: int = 0, fps_steps: int = 32,
                   progress: bool = False) -> GenieEvalResult:
    """Dreams, latent actions and speed of ``world`` on held-out ``clips``.

    Args:
        world: the world, on the device to measure on; its ``temperature`` and
            ``sample_steps`` are the sampling settings used.
        clips: held-out clips of ``CLIP_LENGTH`` frames (uint8 [T, H, W, C] ``frames``, and
            ``actions`` int64 [T] when the data records discrete actions: without them the
            keys that compare with real actions are absent).
        max_clips: clips dreamed (evenly spaced over ``clips``).
        action_clips: clips whose transitions the latent action metrics read (evenly spaced).
        batch_size: clips per batch.
        labelled_fraction: share of the action clips' frames whose real action the
            latent -> real map may see (at most ``action_map.LABEL_BUDGET``).
        seed: seeds the sampling, the random latent actions and the timed play.
        fps_steps: steps timed for ``frames_per_second``.
        progress: show progress bars on stderr.
    """
    if clips.spec.length != CLIP_LENGTH:
        raise ValueError(f"evaluate_genie needs {CLIP_LENGTH}-frame clips, got {clips.spec.length}")
    real_actions = isinstance(clips.data.action_space, gym.spaces.Discrete) and (
        clips.keys is None or "actions" in clips.keys)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), disable=not progress)
    with bar:
        metrics: dict[str, Any] = latent_action_metrics(
            world, clips, spaced_indices(len(clips), action_clips), batch_size=batch_size,
            labelled_fraction=labelled_fraction, real_actions=real_actions, progress=bar)
        rollouts, rows = rollout_metrics(world, clips, spaced_indices(len(clips), max_clips),
                                         batch_size=batch_size, seed=seed, progress=bar)
        metrics.update(rollouts)
        task = bar.add_task("speed", total=1)
        prompt = clips[0]["frames"][0].numpy()  # (H, W, C)
        metrics["frames_per_second"] = frames_per_second(world, prompt, steps=fps_steps, seed=seed)
        bar.advance(task)
    metrics.update({"action_clips": min(action_clips, len(clips)), "temperature": world.temperature,
                    "sample_steps": world.sample_steps, "keep_bias": world.keep_bias, "seed": seed})
    return GenieEvalResult(metrics, rows)
