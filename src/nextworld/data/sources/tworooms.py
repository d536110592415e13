"""Offline Two-Rooms data, as PLDM generates it: a point moved by an exploring policy, no goal.

Source names: ``tworooms`` (PLDM's fixed wall, the same as ``tworooms:fixed``) and
``tworooms:random-wall`` (a wall and door drawn per episode). Policies, each a heading and a
step length uniform in ``[0, 2.45]`` px every step, so the data covers the whole action range
a planner uses:

- ``random``: a uniform heading every step;
- ``wandering``: a uniform first heading, then a random walk, each step turned by von Mises
  noise of concentration ``WANDER_CONCENTRATION`` (long, smooth, room-crossing paths);
- ``crossing``: ``wandering``, but ``CROSS_RATE`` of the episodes start beside the door,
  heading through it, as PLDM builds 60% of its trajectories to pass the door
  (``cross_wall_rate``): with plain wandering only about 10% of episodes change rooms, and a
  model then knows the door's edges too vaguely to plan through it reliably;
- ``sticky``: the previous action again with probability ``sticky_prob``, else a random one.

Episode ``i`` draws everything (layout, start, actions) from ``numpy.random.default_rng(seed + i)``
and stores that seed (splits go by seed). It starts uniformly anywhere in free space and runs
exactly ``max_episode_steps`` actions (PLDM uses 91 per episode; pass it): the collector never
ends an episode early. As for Gymnasium sources, the frame after the last action is the last
row, with action zeros and flags False, and the row before it is truncated, so an episode of
``k`` actions has ``k + 1`` rows.

Rows hold frames uint8 [T, 64, 64, 3], actions float32 [T, 2] (the displacement commanded,
norm at most 2.45), rewards float32 [T] (zeros) and the hidden labels ``position`` float32
[T, 2] (the agent's true x, y in pixels) and ``wall`` float32 [T, 2] (wall column, door row).
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from nextworld.data.episode_format import Episode
from nextworld.data.episode_writer import EpisodeWriter
from nextworld.data.sources.collect import CollectConfig, CollectSummary
from nextworld.data.sources.progress import EpisodeProgress
from nextworld.data.tasks.tworooms import (FPS, MAX_STEP_NORM, SIZE, Layout, TwoRoomsConfig, clip_step,
                                           render_frames, sample_free, sample_layout)
from nextworld.errors import UserInputError

VARIANTS = {"fixed": False, "random-wall": True}
"""Variant (the part of the source name after ``tworooms:``) -> whether the wall is drawn per episode."""
WANDER_CONCENTRATION = 5.0
"""Von Mises concentration of the wandering policy's turn each step (larger: straighter paths)."""
CROSS_RATE = 0.6
"""Share of ``crossing`` episodes that start beside the door heading through it (PLDM's cross_wall_rate)."""


def policy_actions(rng: np.random.Generator, policy: str, steps: int, sticky_prob: float,
                   first_heading: float | None = None) -> np.ndarray:
    """``steps`` actions of ``policy``, float32 [steps, 2], each of norm at most MAX_STEP_NORM
    (up to float32 rounding, which ``clip_step`` absorbs). ``first_heading`` (radians) starts a
    wandering walk in that direction instead of a uniform one."""
    lengths = rng.uniform(0.0, MAX_STEP_NORM, steps)  # [steps]
    if policy in ("wandering", "crossing"):
        turns = rng.vonmises(0.0, WANDER_CONCENTRATION, steps)
        turns[0] = rng.uniform(0.0, 2 * np.pi) if first_heading is None else first_heading
        headings = np.cumsum(turns)  # [steps]
    else:
        headings = rng.uniform(0.0, 2 * np.pi, steps)
    actions = lengths[:, None] * np.stack([np.cos(headings), np.sin(headings)], axis=1)  # [steps, 2]
    if policy == "sticky":
        # the first action has nothing to repeat; a repeat copies the action last taken
        repeat = rng.random(steps) < sticky_prob
        repeat[0] = False
        source = np.maximum.accumulate(np.where(repeat, 0, np.arange(steps)))  # index of the action repeated
        actions = actions[source]
    return actions.astype(np.float32)


def _beside_the_door(rng: np.random.Generator, layout: Layout) -> tuple[float, float, float]:
    """A start 4-12 px to either side of the door, within 3 px of its centre row, and a heading
    (radians) through the door to the other room, give or take 0.2."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    x = layout.wall_x + side * rng.uniform(4.0, 12.0)
    y = layout.door_y + rng.uniform(-3.0, 3.0)
    heading = (np.pi if side > 0 else 0.0) + rng.normal(0.0, 0.2)
    return float(x), float(y), float(heading)


def _episode(cfg: CollectConfig, random_wall: bool, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    layout = sample_layout(rng, random_wall)
    steps = cfg.max_episode_steps
    heading = None
    if cfg.policy == "crossing" and rng.random() < CROSS_RATE:
        x, y, heading = _beside_the_door(rng, layout)
    else:
        x, y = sample_free(rng, layout)
    actions = policy_actions(rng, cfg.policy, steps, cfg.sticky_prob, heading)  # float32 [steps, 2]
    positions = np.empty((steps + 1, 2), np.float64)
    positions[0] = x, y
    for t, (dx, dy) in enumerate(actions.tolist()):
        x, y = layout.move(x, y, *clip_step(dx, dy))  # as TwoRoomsEnv.step moves
        positions[t + 1] = x, y
    truncations = np.zeros(steps + 1, bool)
    truncations[-2] = True  # the last action's row; the final frame's row has none
    return Episode(
        frames=render_frames(positions, layout),  # [steps + 1, 64, 64, 3]
        actions=np.concatenate([actions, np.zeros((1, 2), np.float32)]),  # [steps + 1, 2]
        rewards=np.zeros(steps + 1, np.float32), terminations=np.zeros(steps + 1, bool), truncations=truncations,
        labels={"position": positions.astype(np.float32),
                "wall": np.tile(np.float32([layout.wall_x, layout.door_y]), (steps + 1, 1))},
        seed=seed)


def collect_tworooms(variant: str, cfg: CollectConfig) -> CollectSummary:
    """Collect ``cfg.episodes`` Two-Rooms episodes of ``variant`` (``fixed`` or ``random-wall``) into ``cfg.out``."""
    if variant not in VARIANTS:
        raise UserInputError(f"tworooms:{variant}: unknown variant; choose tworooms (fixed wall) or "
                             f"tworooms:random-wall")
    if cfg.size != SIZE:
        raise UserInputError(f"size {cfg.size}: tworooms renders 64×64 only, use size 64")
    started = time.perf_counter()
    random_wall = VARIANTS[variant]
    source = {
        "kind": "tworooms", "variant": variant, "policy": cfg.policy, "sticky_prob": cfg.sticky_prob,
        "wander_concentration": WANDER_CONCENTRATION, "cross_rate": CROSS_RATE if cfg.policy == "crossing" else None,
        "seed": cfg.seed, "max_episode_steps": cfg.max_episode_steps,
        "success_radius": TwoRoomsConfig().success_radius, "max_step_norm": MAX_STEP_NORM,
    }
    with EpisodeWriter(cfg.out, fps=FPS, frame_shape=(SIZE, SIZE, 3),
                       action_space=gym.spaces.Box(-MAX_STEP_NORM, MAX_STEP_NORM, (2,), np.float32),
                       source=source, labels={"position": ((2,), "float32"), "wall": ((2,), "float32")},
                       split={"by": "seed", "range": [cfg.seed, cfg.seed + cfg.episodes]},
                       overwrite=cfg.overwrite) as writer, \
            EpisodeProgress(cfg.episodes, f"tworooms:{variant}", cfg.progress) as progress:
        for index in range(cfg.episodes):
            episode = _episode(cfg, random_wall, cfg.seed + index)
            writer.add(episode)
            progress.advance(len(episode))
    return CollectSummary(out=cfg.out, episodes=writer.num_episodes, frames=writer.num_frames,
                          seconds=time.perf_counter() - started)
