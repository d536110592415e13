"""Procgen episodes (CoinRun and the other games): hard mode, 64×64, many envs stepped together.

Procgen's vectorised env resets each game by itself. After the action that ends an episode,
``observe()`` returns ``first[i] = True``, the *next* episode's first frame in ``obs[i]`` and the
ended episode's final reward in ``rew[i]``. The terminal frame is never seen, so an episode
here ends on the last frame it saw, whose row carries the final reward and end flag (the
convention of ``nextworld.data.episode_format`` for sources without a terminal frame).

How an episode ends, and how it is flagged:

- the game ends it (the agent died or reached the goal) before ``PROCGEN_TIMEOUT`` actions:
  termination;
- the game's own time limit of ``PROCGEN_TIMEOUT`` actions: truncation;
- ``max_episode_steps`` actions: truncation. Procgen cannot reset one of its envs alone, so
  that env plays its game on unrecorded until the game ends, and records again from the next
  episode's first frame.

Episodes are written in the order they end (step, then env index); once ``episodes`` have
ended, the ones still running are discarded. The policy draws its actions from one numpy
generator seeded with ``seed``, and Procgen's levels from ``rand_seed=seed``, so the same
config (``num_envs`` included) gives the same dataset.

With ``frame_skip`` K > 1 each recorded action is held for K game steps and only the frame after
them is recorded (the dataset's fps is 15 / K); ``max_episode_steps`` counts recorded steps and
``PROCGEN_TIMEOUT`` the game's own.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from nextworld.data.episode_format import Episode, parse_range
from nextworld.data.episode_writer import EpisodeWriter
from nextworld.data.sources.collect import CollectConfig, CollectSummary
from nextworld.data.sources.progress import EpisodeProgress
from nextworld.errors import UserInputError

with contextlib.redirect_stderr(io.StringIO()):
    # procgen registers its envs with the unmaintained `gym` package, whose import prints a
    # deprecation notice to stderr; we use only procgen's own gym3 interface.
    from procgen import ProcgenGym3Env
    from procgen.env import ENV_NAMES

PROCGEN_FRAME_SHAPE = (64, 64, 3)
PROCGEN_NUM_ACTIONS = 15
PROCGEN_TIMEOUT = 1000
"""Every Procgen game ends an episode after this many actions."""
PROCGEN_FPS = 15.0
"""The frame rate of Procgen's own interactive viewer and videos."""


@dataclass
class _RunningEpisode:
    """The rows recorded so far of one env's current episode."""

    level: int
    frames: list[np.ndarray]  # each uint8 [64, 64, 3]
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    game_steps: int = 0  # the game's steps so far, recorded or not (its time limit counts them)

    def finish(self, *, terminated: bool, truncated: bool) -> Episode:
        """The episode as arrays; its last row carries the end flag."""
        length = len(self.frames)
        terminations = np.zeros(length, bool)
        truncations = np.zeros(length, bool)
        terminations[-1], truncations[-1] = terminated, truncated
        return Episode(
            frames=np.stack(self.frames),  # [T, 64, 64, 3]
            actions=np.asarray(self.actions, np.int64),
            rewards=np.asarray(self.rewards, np.float32),
            terminations=terminations, truncations=truncations, level=self.level)


def _check(game: str, cfg: CollectConfig) -> tuple[int, int]:
    """Validate the Procgen-specific inputs; returns the level range."""
    if game not in ENV_NAMES:
        raise UserInputError(f"procgen:{game}: unknown Procgen game; choose one of {', '.join(ENV_NAMES)}")
    if cfg.size != PROCGEN_FRAME_SHAPE[0]:
        raise UserInputError(f"size {cfg.size}: Procgen renders 64×64 frames only, use size 64")
    if not 0 <= cfg.seed < 2**31:
        raise UserInputError(f"seed {cfg.seed}: Procgen needs a seed in [0, 2**31)")
    return parse_range(cfg.levels, "levels")


def parse_action_subset(text: str | None) -> np.ndarray:
    """The action ids a policy draws from: ``"1,2,7"`` -> int64 [3]; None -> all 15."""
    if text is None:
        return np.arange(PROCGEN_NUM_ACTIONS)
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserInputError(f"actions {text!r}: expected comma-separated action ids such as 1,2,7") from None
    bad = [i for i in ids if not 0 <= i < PROCGEN_NUM_ACTIONS]
    if bad or len(set(ids)) != len(ids):
        raise UserInputError(f"actions {text!r}: expected distinct ids in [0, {PROCGEN_NUM_ACTIONS})")
    return np.asarray(sorted(ids), np.int64)


def _act_held(env: ProcgenGym3Env, actions: np.ndarray, frame_skip: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold ``actions`` for ``frame_skip`` game steps of every env.

    Returns the rewards summed over the held steps (float32 [num_envs]), the last frames (uint8
    [num_envs, 64, 64, 3]), ``first`` (bool [num_envs]: the env's episode ended during these
    steps, so the frame returned is a later one's first recorded frame), ``played`` (int64
    [num_envs]: the game steps the ended episode played of the hold; ``frame_skip`` where none
    ended) and ``since`` (int64 [num_envs]: game steps since the env's last reset in the hold, which
    the episode now running has played unrecorded). An episode that ends mid-hold ends there, its
    reward counting the steps up to its end; the next one plays the rest of the hold unrecorded,
    so with ``frame_skip`` > 1 an episode may be recorded from up to ``frame_skip - 1`` game steps
    into its level, and one that also ends within the hold is not recorded at all.
    """
    rewards = np.zeros(len(actions), np.float32)
    ended = np.zeros(len(actions), bool)
    played = np.zeros(len(actions), np.int64)
    since = np.zeros(len(actions), np.int64)
    for _ in range(frame_skip):
        env.act(actions)
        reward, obs, first = env.observe()
        rewards += np.where(ended, 0.0, reward)  # a later episode's reward is not the ended one's
        played += ~ended
        since = np.where(first, 0, since + 1)
        ended |= first
    return rewards, obs["rgb"], ended, played, since


def collect_procgen(game: str, cfg: CollectConfig) -> CollectSummary:
    """Collect ``cfg.episodes`` complete Procgen episodes of ``game`` into ``cfg.out``.

    Rows hold frames uint8 [T, 64, 64, 3], the true actions int64 [T] of ``Discrete(15)``,
    rewards float32 [T] and end flags bool [T]; each episode's level seed is its ``level``.
    """
    levels = _check(game, cfg)
    allowed = parse_action_subset(cfg.actions)  # int64 [A]
    started = time.perf_counter()
    env = ProcgenGym3Env(num=cfg.num_envs, env_name=game, distribution_mode="hard",
                         start_level=levels[0], num_levels=levels[1] - levels[0], rand_seed=cfg.seed)
    source = {
        "kind": "procgen", "game": game, "distribution_mode": "hard", "levels": list(levels),
        "policy": cfg.policy, "sticky_prob": cfg.sticky_prob, "seed": cfg.seed,
        "num_envs": cfg.num_envs, "max_episode_steps": cfg.max_episode_steps,
        "action_names": ["+".join(combo) or "NOOP" for combo in env.combos],
    }
    if cfg.actions is not None:  # recorded only when restricted, so a dataset of all actions is as before
        source["policy_actions"] = allowed.tolist()
    if cfg.frame_skip != 1:  # likewise
        source["frame_skip"] = cfg.frame_skip
    rng = np.random.default_rng(cfg.seed)
    try:
        with EpisodeWriter(cfg.out, fps=PROCGEN_FPS / cfg.frame_skip, frame_shape=PROCGEN_FRAME_SHAPE,
                           action_space=gym.spaces.Discrete(PROCGEN_NUM_ACTIONS), source=source,
                           split={"by": "level", "range": list(levels)},
                           overwrite=cfg.overwrite) as writer, \
                EpisodeProgress(cfg.episodes, f"procgen:{game}", cfg.progress) as progress:
            _, obs, first = env.observe()
            rgb = obs["rgb"]  # uint8 [num_envs, 64, 64, 3]
            infos = env.get_info()
            running: list[_RunningEpisode | None] = [
                _RunningEpisode(level=int(infos[i]["level_seed"]), frames=[rgb[i].copy()])
                for i in range(cfg.num_envs)]
            actions = np.zeros(cfg.num_envs, np.int64)
            while writer.num_episodes < cfg.episodes:
                uniform = allowed[rng.integers(0, len(allowed), cfg.num_envs)]  # [num_envs]
                if cfg.policy == "sticky":
                    # an episode's first action has nothing to repeat
                    repeat = (rng.random(cfg.num_envs) < cfg.sticky_prob) & ~first
                    actions = np.where(repeat, actions, uniform)
                else:
                    actions = uniform
                rewards, rgb, first, played, since = _act_held(env, actions, cfg.frame_skip)
                infos = env.get_info() if first.any() else []
                for i in range(cfg.num_envs):
                    episode = running[i]
                    if episode is not None:
                        episode.actions.append(int(actions[i]))
                        episode.rewards.append(float(rewards[i]))
                        episode.game_steps += int(played[i])
                        steps = len(episode.actions)
                        if first[i] or steps >= cfg.max_episode_steps:
                            truncated = not first[i] or episode.game_steps >= PROCGEN_TIMEOUT
                            writer.add(episode.finish(terminated=not truncated, truncated=truncated))
                            progress.advance(steps)
                            running[i] = None
                            if writer.num_episodes == cfg.episodes:
                                break
                        else:
                            episode.frames.append(rgb[i].copy())
                    if first[i]:
                        running[i] = _RunningEpisode(level=int(infos[i]["level_seed"]), frames=[rgb[i].copy()],
                                                     game_steps=int(since[i]))
    finally:
        env.close()
    return CollectSummary(out=cfg.out, episodes=writer.num_episodes, frames=writer.num_frames,
                          seconds=time.perf_counter() - started)
