"""A learned world as a Gymnasium env: agents, scripts and the player all drive it alike.

    env = WorldEnv(World.from_pretrained("coinrun-tiny"), prompts=[image, ...])
    obs, info = env.reset(seed=0, options={"prompt": image})   # or a prompt drawn from ``prompts``
    obs, reward, terminated, truncated, info = env.step(action)

Observations are the world's frames, uint8 [H, W, 3]; actions its action space (Genie: the
latent actions, ``Discrete(n)``). A Genie world predicts no reward and no ending: reward is
0.0 and ``terminated`` never set; an episode is truncated after ``max_episode_steps``.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from nextworld.errors import UserInputError
from nextworld.play.world import World


class WorldEnv(gym.Env):
    """``World`` as ``gym.Env``: ``reset(options={"prompt": image})``, ``step(action)``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, world: World, prompts: Sequence[Any] = (), max_episode_steps: int = 1000,
                 render_mode: str | None = "rgb_array") -> None:
        if render_mode not in (None, "rgb_array"):
            raise UserInputError(f"render_mode {render_mode!r}: a world renders rgb_array only")
        self.world = world
        self.prompts = list(prompts)
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.action_space = world.action_space
        self.observation_space = gym.spaces.Box(0, 255, world.frame_shape, np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        prompt = (options or {}).get("prompt")
        if prompt is None:
            if not self.prompts:
                raise UserInputError("WorldEnv.reset: no prompt; pass options={'prompt': image} "
                                     "or give the env prompts to draw from")
            prompt = self.prompts[int(self.np_random.integers(len(self.prompts)))]
        world_seed = int(self.np_random.integers(2**31))  # sampling follows the env's seed
        frame = self.world.reset(prompt, seed=world_seed)
        return frame, {"steps": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        frame = self.world.step(action.item() if isinstance(action, np.ndarray) and action.ndim == 0 else action)
        truncated = self.world.steps >= self.max_episode_steps
        return frame, 0.0, False, truncated, {"steps": self.world.steps}

    def render(self) -> np.ndarray | None:
        return None if self.world.frame is None else self.world.frame.copy()
