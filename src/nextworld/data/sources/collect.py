"""Collect an episode dataset from a simulator: one config, one entry point, routed by name.

Source names (``CollectConfig.source``):

- ``coinrun``: Procgen CoinRun, the same as ``procgen:coinrun``.
- ``procgen:<game>``: any Procgen game, hard mode, 64×64 (see ``procgen.py``).
- ``gym:<env-id>``: any Gymnasium env with an ``rgb_array`` render (see ``gym.py``).
- ``tworooms``: built-in Two-Rooms point navigation with PLDM's fixed wall, the same as
  ``tworooms:fixed``; ``tworooms:random-wall`` draws the wall and door per episode (see
  ``tworooms.py``; PLDM's data uses ``--policy wandering --max-episode-steps 91``).

A new source is one entry in ``SOURCE_KINDS`` (and, for a bare name, ``SOURCE_ALIASES``):
a function ``(name after the colon, config) -> CollectSummary``. Source modules are imported
only when used, because importing Procgen loads its C library and the old ``gym`` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Literal

import tyro


from nextworld.data.episode_writer import check_output
from nextworld.errors import UserInputError


@dataclass
class CollectConfig:
    """Collect episodes from a simulator into an episode dataset."""

    source: Annotated[str, tyro.conf.Positional]
    """What to collect from: ``coinrun``, ``procgen:<game>``, ``gym:<env-id>``, ``tworooms`` or
    ``tworooms:random-wall``."""
    out: Path
    """Dataset directory to create."""
    episodes: int = 100
    """Complete episodes to write; episodes still running when this many are done are discarded."""
    levels: str = "0:10000"
    """Procgen level seeds ``A:B`` (A included, B excluded). Gym sources use ``seed`` instead."""
    policy: Literal["random", "sticky", "wandering", "crossing"] = "random"
    """``random``: a uniform action each step; ``sticky``: repeat the previous action with
    probability ``sticky_prob``, otherwise a uniform one (longer coherent motions);
    ``wandering`` (Two-Rooms only): a heading that turns a little each step, PLDM's policy;
    ``crossing`` (Two-Rooms only): wandering, with 60% of episodes started beside the door heading through it."""
    sticky_prob: float = 0.75
    """Probability that the sticky policy repeats its previous action."""
    actions: str | None = None
    """Procgen only: the action ids the random and sticky policies draw from, comma-separated
    (default: all 15). CoinRun tells only six apart: ``1,2,4,5,7,8`` is LEFT, LEFT+UP, NOOP, UP,
    RIGHT, RIGHT+UP (the rest repeat one of these or press keys the game ignores)."""
    seed: int = 0
    """Seed of the policy and the environments; the same config gives the same dataset.
    Gym episode ``i`` is reset with seed ``seed + i``."""
    max_episode_steps: int = 1000
    """Actions after which an episode is cut off and marked truncated. Two-Rooms episodes
    always run this many (PLDM's data: 91)."""
    frame_skip: int = 1
    """Procgen only: game steps each recorded step holds its action for (Atari's frame skip). Only
    every ``frame_skip``-th frame is recorded, its reward is the sum over the held steps, and
    ``max_episode_steps`` counts recorded steps. 1 records every frame."""
    num_envs: int = 32
    """Procgen environments stepped together (the dataset depends on it, like on ``seed``)."""
    size: int = 64
    """Side of the square frames in pixels. Gym renders are padded to a square and resized;
    Procgen renders 64×64 and accepts only 64."""
    overwrite: bool = False
    """Replace an existing dataset at ``out``."""
    progress: bool = True
    """Show a progress bar (episodes written, frames per second) on stderr."""


@dataclass
class CollectSummary:
    """What a collection wrote, and how fast (collection and writing together)."""

    out: Path
    """The dataset directory."""
    episodes: int
    """Episodes written."""
    frames: int
    """Frames written, all episodes together."""
    seconds: float
    """Wall-clock time from opening the source to the last shard written."""

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _collect_procgen(game: str, cfg: CollectConfig) -> CollectSummary:
    from nextworld.data.sources.procgen import collect_procgen

    return collect_procgen(game, cfg)


def _collect_gym(env_id: str, cfg: CollectConfig) -> CollectSummary:
    from nextworld.data.sources.gym import collect_gym

    return collect_gym(env_id, cfg)


def _collect_tworooms(variant: str, cfg: CollectConfig) -> CollectSummary:
    from nextworld.data.sources.tworooms import collect_tworooms

    return collect_tworooms(variant, cfg)


SOURCE_KINDS: dict[str, Callable[[str, CollectConfig], CollectSummary]] = {
    "procgen": _collect_procgen,
    "gym": _collect_gym,
    "tworooms": _collect_tworooms,
}
"""Source kind (the part of the name before ``:``) -> collector of that kind."""

SOURCE_ALIASES: dict[str, str] = {"coinrun": "procgen:coinrun", "tworooms": "tworooms:fixed"}
"""Bare source names that stand for a full ``kind:name``."""


def _check_numbers(cfg: CollectConfig) -> None:
    for name in ("episodes", "max_episode_steps", "frame_skip", "num_envs", "size"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"{name} {getattr(cfg, name)}: must be at least 1")
    if not 0.0 <= cfg.sticky_prob <= 1.0:
        raise UserInputError(f"sticky_prob {cfg.sticky_prob}: must lie in [0, 1]")


def collect(cfg: CollectConfig) -> CollectSummary:
    """Collect ``cfg.episodes`` complete episodes from ``cfg.source`` into ``cfg.out``.

    Every input is checked before the output directory is created, so a bad source name,
    level range or environment leaves nothing behind.
    """
    _check_numbers(cfg)
    check_output(cfg.out, cfg.overwrite)
    kind, _, name = SOURCE_ALIASES.get(cfg.source, cfg.source).partition(":")
    collector = SOURCE_KINDS.get(kind)
    if collector is None:
        raise UserInputError(
            f"source {cfg.source!r}: unknown; expected coinrun, procgen:<game>, gym:<env-id> or tworooms")
    if cfg.policy in ("wandering", "crossing") and kind != "tworooms":
        raise UserInputError(f"policy {cfg.policy}: Two-Rooms only (it turns a continuous heading); "
                             f"use random or sticky for {cfg.source}")
    if cfg.actions is not None and kind != "procgen":
        raise UserInputError(f"actions {cfg.actions!r}: Procgen only; {cfg.source} draws from its whole action space")
    if cfg.frame_skip != 1 and kind != "procgen":
        raise UserInputError(f"frame_skip {cfg.frame_skip}: Procgen only; {cfg.source} records every step")
    return collector(name, cfg)
