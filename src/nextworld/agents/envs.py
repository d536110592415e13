"""Live environments for online agents: every env as 64x64 frames, one step at a time.

``make_pixel_env(name, size)`` gives a :class:`PixelEnv`: ``reset(seed) -> frame`` and
``step(action) -> (frame, reward, terminated, truncated, success)``, frames uint8 [S, S, 3].

- ``gym:<id>``: any Gymnasium env with an ``rgb_array`` render; the frame is its render made
  square and resized, as ``nextworld collect gym:<id>`` stores it (for MiniGrid: the whole grid
  as a person sees it). ``reset(seed)`` is the env's own reset with that seed.
- ``coinrun`` / ``procgen:<game>``: Procgen, hard mode. ``reset(seed)`` plays level ``seed``;
  with ``levels=(A, B)`` the env instead plays levels drawn from A..B-1, one after another
  (Procgen draws them itself, seeded by the first reset's seed), which is how an agent trains.
  Procgen never shows the terminal frame: the step that ends an episode returns the last frame
  seen again. Its own time limit (1,000 steps) counts as truncation.

Success: the env's ``info["success"]`` or ``info["is_success"]`` when it gives one, else an
episode that terminates with a positive reward (MiniGrid's goal, CoinRun's coin).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from nextworld.errors import UserInputError


class PixelEnv(Protocol):
    """The interface the online agents use; see the module docstring."""

    action_space: gym.Space
    name: str

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, bool]: ...

    def close(self) -> None: ...


def episode_success(info: dict[str, Any], terminated: bool, reward: float) -> bool:
    """Whether a step ended its episode in success: the env's ``info["success"]`` or
    ``info["is_success"]`` when it gives one, else a termination with a positive reward."""
    for key in ("success", "is_success"):
        if key in info:
            return bool(info[key])
    return bool(terminated and reward > 0)


class GymPixelEnv:
    def __init__(self, env_id: str, size: int) -> None:
        from nextworld.data.sources.gym import make_rgb_env, render_frame

        self.name, self.size = f"gym:{env_id}", size
        self._render = render_frame
        self.env = make_rgb_env(env_id)
        space = self.env.action_space
        self.offset = int(space.start) if isinstance(space, gym.spaces.Discrete) else 0
        self.action_space = gym.spaces.Discrete(int(space.n)) if isinstance(space, gym.spaces.Discrete) else space

    def reset(self, seed: int) -> np.ndarray:
        self.env.reset(seed=int(seed))
        return self._render(self.env, self.name[4:], self.size)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, bool]:
        act = int(action) + self.offset if isinstance(self.action_space, gym.spaces.Discrete) else np.asarray(action)
        _, reward, terminated, truncated, info = self.env.step(act)
        frame = self._render(self.env, self.name[4:], self.size)
        return frame, float(reward), bool(terminated), bool(truncated), episode_success(info, terminated, float(reward))

    def close(self) -> None:
        self.env.close()


class ProcgenPixelEnv:
    TIMEOUT = 1000

    def __init__(self, game: str, size: int, levels: tuple[int, int] | None) -> None:
        with contextlib.redirect_stderr(io.StringIO()):  # the old gym's deprecation notice
            from procgen import ProcgenGym3Env
            from procgen.env import ENV_NAMES
        if game not in ENV_NAMES:
            raise UserInputError(f"procgen:{game}: unknown Procgen game; known: {', '.join(sorted(ENV_NAMES))}")
        if size != 64:
            raise UserInputError(f"procgen:{game}: renders 64x64 frames, not {size}x{size}")
        self.name, self.game, self.levels = f"procgen:{game}", game, levels
        self._make = ProcgenGym3Env
        self.env = None
        self.action_space = gym.spaces.Discrete(15)
        self._frame: np.ndarray | None = None
        self._steps = 0

    def _new(self, start: int, count: int, seed: int) -> None:
        self.env = self._make(num=1, env_name=self.game, start_level=start, num_levels=count,
                              distribution_mode="hard", rand_seed=int(seed) % 2**31)

    def reset(self, seed: int) -> np.ndarray:
        if self.levels is None:
            self._new(int(seed), 1, seed)
        elif self.env is None:
            self._new(self.levels[0], self.levels[1] - self.levels[0], seed)
        elif self._steps:  # mid-episode: play on unrecorded until Procgen starts the next one
            while True:
                self.env.act(np.zeros(1, np.int32))
                if self.env.observe()[2][0]:
                    break
        _, obs, _ = self.env.observe()
        self._frame, self._steps = obs["rgb"][0].copy(), 0
        return self._frame

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, bool]:
        self.env.act(np.asarray([int(action)], np.int32))
        reward, obs, first = self.env.observe()
        self._steps += 1
        if not first[0]:
            self._frame = obs["rgb"][0].copy()
            return self._frame, float(reward[0]), False, False, False
        truncated = self._steps >= self.TIMEOUT
        self._steps = 0
        return self._frame, float(reward[0]), not truncated, truncated, bool(not truncated and reward[0] > 0)

    def close(self) -> None:
        self.env = None  # Procgen's env has no close; dropping it frees the game


def make_pixel_env(name: str, size: int = 64, levels: tuple[int, int] | None = None) -> PixelEnv:
    """``gym:<id>``, ``coinrun`` or ``procgen:<game>`` as a :class:`PixelEnv` (module docstring)."""
    kind, _, rest = ("procgen:coinrun" if name == "coinrun" else name).partition(":")
    if kind == "gym" and rest:
        return GymPixelEnv(rest, size)
    if kind == "procgen" and rest:
        return ProcgenPixelEnv(rest, size, levels)
    raise UserInputError(f"env {name!r}: unknown; use gym:<env-id>, coinrun or procgen:<game>")
