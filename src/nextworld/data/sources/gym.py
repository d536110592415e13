"""Episodes from any Gymnasium environment that renders ``rgb_array`` frames.

Frames are ``env.render()``, padded with black to a square and resized to ``size``×``size``.
The observation the env returns is not stored: the rendered frame is what a world model sees.
For MiniGrid and BabyAI this render is the whole grid in RGB (the cells the agent sees are
lit), which is why we use it rather than ``minigrid.wrappers.RGBImgObsWrapper``: one code
path serves every env, and the frame is the same picture a person gets when playing.

Episode ``i`` is reset with seed ``seed + i`` and stores that seed (splits go by seed). After
the action that ends an episode, the env's terminal frame is rendered and stored as the last
row, with action 0, reward 0 and flags False (the convention of ``nextworld.data.episode_format``),
so an episode of ``k`` actions has ``k + 1`` rows.
"""

from __future__ import annotations

import time

import gymnasium as gym
import minigrid  # noqa: F401  (importing registers the MiniGrid and BabyAI envs with Gymnasium)
import numpy as np
from PIL import Image

from nextworld.data.episode_format import Episode
from nextworld.data.episode_writer import EpisodeWriter
from nextworld.data.sources.collect import CollectConfig, CollectSummary
from nextworld.data.sources.progress import EpisodeProgress
from nextworld.data.frames import fit_square
from nextworld.errors import UserInputError

DEFAULT_FPS = 30.0
"""Frame rate recorded for envs whose metadata gives no ``render_fps``."""


def make_rgb_env(env_id: str) -> gym.Env:
    """``gym.make(env_id, render_mode="rgb_array")``, with errors a user can fix as UserInputError."""
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except (gym.error.UnregisteredEnv, ModuleNotFoundError) as e:
        raise UserInputError(f"gym:{env_id}: unknown Gymnasium environment id ({e})") from None
    except gym.error.DependencyNotInstalled as e:
        raise UserInputError(f"gym:{env_id}: needs a package that is not installed ({e})") from None
    except gym.error.Error as e:  # a malformed id, among others
        raise UserInputError(f"gym:{env_id}: Gymnasium cannot make this environment ({e})") from None
    except TypeError as e:  # an env whose constructor takes no render_mode
        raise UserInputError(f"gym:{env_id}: the environment cannot be made with render_mode='rgb_array' ({e})") from None
    if "rgb_array" not in env.metadata.get("render_modes", ()):
        env.close()
        raise UserInputError(f"gym:{env_id}: the environment has no rgb_array render mode, so it gives no frames")
    space = env.action_space
    if not isinstance(space, (gym.spaces.Discrete, gym.spaces.Box)):
        env.close()
        raise UserInputError(f"gym:{env_id}: action space {space} is not supported, only Discrete and Box are")
    return env


def render_frame(env: gym.Env, env_id: str, size: int) -> np.ndarray:
    """The env's current frame made square, uint8 [size, size, 3]."""
    frame = env.render()
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        got = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise UserInputError(f"gym:{env_id}: render() must return uint8 [H, W, 3] frames, got {got}")
    return fit_square(Image.fromarray(frame), size, "pad")


def _play_episode(env: gym.Env, env_id: str, cfg: CollectConfig, episode_seed: int,
                  rng: np.random.Generator) -> Episode:
    """One episode from ``reset(seed=episode_seed)``, ending with the terminal frame's row."""
    space = env.action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    env.reset(seed=episode_seed)
    frames = [render_frame(env, env_id, cfg.size)]
    actions, rewards, terminations, truncations = [], [], [], []
    action = None  # as stored: Discrete index in [0, n), or float32 Box action
    for step in range(cfg.max_episode_steps):
        if action is None or cfg.policy == "random" or rng.random() >= cfg.sticky_prob:
            sampled = space.sample()
            action = np.int64(sampled - space.start) if discrete else sampled.astype(np.float32)
        _, reward, terminated, truncated, _ = env.step(int(action + space.start) if discrete else action)
        truncated = truncated or (step + 1 == cfg.max_episode_steps and not terminated)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        frames.append(render_frame(env, env_id, cfg.size))
        if terminated or truncated:
            break
    actions.append(np.int64(0) if discrete else np.zeros(space.shape, np.float32))
    rewards.append(0.0)
    terminations.append(False)
    truncations.append(False)
    return Episode(
        frames=np.stack(frames),  # [T, size, size, 3]
        actions=np.stack(actions),  # [T] or [T, *shape]
        rewards=np.asarray(rewards, np.float32), terminations=np.asarray(terminations),
        truncations=np.asarray(truncations), seed=episode_seed)


def collect_gym(env_id: str, cfg: CollectConfig) -> CollectSummary:
    """Collect ``cfg.episodes`` episodes of the Gymnasium env ``env_id`` into ``cfg.out``.

    Rows hold frames uint8 [T, size, size, 3], actions int64 [T] (Discrete: the index in
    ``[0, n)``, i.e. the env's action minus the space's ``start``) or float32 [T, *shape]
    (Box), rewards float32 [T] and end flags bool [T].
    """
    started = time.perf_counter()
    env = make_rgb_env(env_id)
    try:
        env.reset(seed=cfg.seed)
        render_frame(env, env_id, cfg.size)  # a bad render fails here, before the output directory exists
        space = env.action_space
        space.seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        stored_space = gym.spaces.Discrete(int(space.n)) if isinstance(space, gym.spaces.Discrete) else space
        source = {
            "kind": "gym", "env_id": env_id, "policy": cfg.policy, "sticky_prob": cfg.sticky_prob,
            "seed": cfg.seed, "max_episode_steps": cfg.max_episode_steps, "resize": "pad",
        }
        fps = float(env.metadata.get("render_fps") or DEFAULT_FPS)
        with EpisodeWriter(cfg.out, fps=fps, frame_shape=(cfg.size, cfg.size, 3), action_space=stored_space,
                           source=source, split={"by": "seed", "range": [cfg.seed, cfg.seed + cfg.episodes]},
                           overwrite=cfg.overwrite) as writer, \
                EpisodeProgress(cfg.episodes, f"gym:{env_id}", cfg.progress) as progress:
            for index in range(cfg.episodes):
                episode = _play_episode(env, env_id, cfg, cfg.seed + index, rng)
                writer.add(episode)
                progress.advance(len(episode))
    finally:
        env.close()
    return CollectSummary(out=cfg.out, episodes=writer.num_episodes, frames=writer.num_frames,
                          seconds=time.perf_counter() - started)
