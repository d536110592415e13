"""`nextworld plan`: drive an environment with MPC in a world model, and measure it.

Each episode: reset the env with seed ``seed + i``, embed the goal (Two-Rooms gives a goal
image; a Gymnasium env may be given one with ``--goal``), then at every step let MPC pick an
action by rolling the model forward for all candidate sequences at once and scoring them:

- ``goal``: the distance of the predicted embeddings to the goal embedding; by default the
  closest a plan comes (``--over-horizon min``, Euclidean). PLDM's choice, squared distances
  summed over the horizon (``--over-horizon sum --distance squared``), prefers pressing against
  the wall to a detour through the door whenever the door is far: on Two-Rooms validation seeds
  it reached 45-85% where ``min`` reached 85-100% (docs/jepa.md);
- ``reward``: minus the predicted rewards summed over the horizon (a model with a reward head);
- ``goal+reward``: both.

Writes ``success_rate``, ``mean_steps``, ``seconds_per_plan`` (one planner call, mean) and
``seconds_per_episode`` (JSON), plus, for Two-Rooms, a picture of the paths taken.

Env names: ``tworooms`` (PLDM's fixed wall), ``tworooms:random-wall`` (wall and door drawn per
episode), ``gym:<id>`` (frames are the env's rgb_array render, made square and resized like
``nextworld collect gym:<id>`` stores them). An episode succeeds when the env says so
(``info["success"]``, or ``info["is_success"]``), else when it terminates with a positive reward.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import gymnasium as gym
import numpy as np
import torch
import tyro
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nextworld.agents.envs import episode_success
from nextworld.atomic_files import write_json_atomic
from nextworld.data.frames import save_image_grid, to_model_frames
from nextworld.errors import UserInputError
from nextworld.models.base import check_action_space, load_pretrained, read_checkpoint_config
from nextworld.planning.mpc import MPC, MPCConfig
from nextworld.planning.planners import ActionSpec, PlannerConfig, make_planner
from nextworld.train.distributed import resolve_device
from nextworld.zoo import resolve_model

PLANNING_FAMILIES = ("jepa", "dreamer")
"""Families whose models can be planned in: ``encode`` and ``step`` (the WorldModel face), a ``reward``
head (None when absent) and ``config.frame_shape``."""


@dataclass
class PlanConfig:
    """Plan with MPC in a trained world model to reach goals in an environment; report success and speed."""

    run: Annotated[str, tyro.conf.Positional]
    """Run directory of an action-conditioned world model, or a shipped model's name (e.g. tworooms-tiny)."""
    env: str = "tworooms"
    """tworooms, tworooms:random-wall or gym:<env-id>."""
    episodes: int = 50
    """Episodes to run."""
    seed: int = 100_000
    """Episode i resets the env with seed + i: use seeds never used for the training data."""
    planner: Literal["cem", "mppi"] = "mppi"
    """The search: cem refits on the elites; mppi on all candidates weighted by their cost."""
    horizon: int = 12
    """Decisions planned ahead."""
    action_repeat: int = 8
    """Env steps each decision is held for (the plan looks horizon * action_repeat steps ahead)."""
    samples: int = 192
    """Candidate action sequences per planner iteration."""
    iterations: int = 2
    """Planner iterations per call (each call is warm-started from the previous plan)."""
    elites: int = 32
    """cem: the cheapest candidates refit on."""
    temperature: float = 0.5
    """mppi: softmax temperature on the costs in units of their std."""
    replan_every: int = 8
    """Env steps executed from each plan before planning again (rounded up to whole decisions of
    --action-repeat steps: a held action is never cut short)."""
    first_iterations: int | None = 8
    """Planner iterations of each episode's first plan, which starts cold (None: --iterations)."""
    distance: Literal["squared", "euclidean"] = "euclidean"
    """goal objective: squared (PLDM) or plain Euclidean distance of each predicted embedding to the goal's."""
    over_horizon: Literal["sum", "final", "min"] = "min"
    """goal objective: how the distances along a plan become its cost -- summed over the horizon (PLDM;
    arriving sooner costs less), the last step's only (DINO-WM), or the closest the plan comes."""
    objective: Literal["auto", "goal", "reward", "goal+reward"] = "auto"
    """What the planner minimises; auto: goal when the env or --goal gives one, else reward."""
    goal: Path | None = None
    """Goal image for a gym env (the model's frame size, RGB); Two-Rooms draws its own goals."""
    max_steps: int | None = None
    """Step budget per episode (the env's own limit when unset; Two-Rooms: 200)."""
    json: Path | None = None
    """Write the results here (and, for Two-Rooms, a picture of the paths beside it)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    progress: bool = True
    """Show a progress bar."""


# ---------------------------------------------------------------------------- environments


def make_env(name: str, size: int, max_steps: int | None = None
             ) -> tuple[gym.Env, Callable[[gym.Env, Any], np.ndarray], float | None]:
    """The env ``name``, a function (env, observation) -> uint8 frame [size, size, 3] the model
    reads, and the largest action norm the env accepts (None: no limit beyond its box)."""
    kind, _, rest = name.partition(":")
    if kind == "tworooms":
        from nextworld.data.tasks.tworooms import MAX_STEP_NORM, TwoRoomsEnv

        if rest not in ("", "random-wall"):
            raise UserInputError(f"env {name!r}: unknown Two-Rooms variant; use tworooms or tworooms:random-wall")
        if size != 64:
            raise UserInputError(f"env {name!r}: renders 64x64 frames, the model reads {size}x{size}")
        budget = {} if max_steps is None else {"max_episode_steps": max_steps}
        env = TwoRoomsEnv(random_wall=rest == "random-wall", **budget)
        return env, lambda env, obs: np.asarray(obs), MAX_STEP_NORM
    if kind == "gym" and rest:
        from nextworld.data.sources.gym import make_rgb_env, render_frame

        return make_rgb_env(rest), lambda env, obs: render_frame(env, rest, size), None
    raise UserInputError(f"env {name!r}: unknown; use tworooms, tworooms:random-wall or gym:<env-id>")


def load_goal_image(path: Path, size: int) -> np.ndarray:
    """A goal image file as uint8 [size, size, 3]; it must already be the model's frame size."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.size != (size, size):
                raise UserInputError(f"goal {path}: {image.size[0]}x{image.size[1]} pixels; the model reads "
                                     f"{size}x{size} frames, give the goal at that size")
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise UserInputError(f"goal {path}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserInputError(f"goal {path}: not a readable image ({e})") from None


# ---------------------------------------------------------------------------- the cost


class PlanningCost:
    """The cost of candidate action sequences from the current observation, for one plan call.

    ``__call__(actions [N, L(, A)]) -> [N]``: embeds the observation once, rolls the model
    forward for all N candidates together, and scores the L predicted embeddings.
    """

    def __init__(self, model: torch.nn.Module, frame: np.ndarray, goal: torch.Tensor | None,
                 objective: str, device: torch.device, distance: str = "euclidean", over_horizon: str = "min") -> None:
        self.model, self.goal, self.objective, self.device = model, goal, objective, device
        self.distance, self.over_horizon = distance, over_horizon
        self.frame = frame
        self._z: torch.Tensor | None = None

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        if self._z is None:  # lazily: MPC does not plan at every step
            self._z = embed_frame(self.model, self.frame, self.device)  # (1, D)
        actions = actions.to(self.device)
        n = actions.shape[0]
        state = self._z.expand(n, -1)
        summed = torch.zeros(n, device=self.device)  # goal distances summed over the horizon
        closest = torch.full((n,), math.inf, device=self.device)
        last = summed
        reward = torch.zeros(n, device=self.device)
        # step by step through the WorldModel face, scoring as we go (no [N, L, D] stack is kept)
        for t in range(actions.shape[1]):
            state, prediction = self.model.step(state, actions[:, t])
            if "goal" in self.objective:
                squared = (prediction.embedding - self.goal).pow(2).sum(dim=-1)  # (N,)
                last = squared if self.distance == "squared" else squared.sqrt()
                summed = summed + last
                closest = torch.minimum(closest, last)
            if "reward" in self.objective:
                reward = reward + prediction.reward
        cost = -reward
        if "goal" in self.objective:
            cost = cost + {"sum": summed, "final": last, "min": closest}[self.over_horizon]
        return cost.cpu()


def embed_frame(model: torch.nn.Module, frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [H, W, 3] -> the model's embedding [1, D]."""
    x = to_model_frames(torch.from_numpy(np.ascontiguousarray(frame))[None, None]).to(device)  # (1, 1, C, H, W)
    return model.encode(x)


# ---------------------------------------------------------------------------- episodes


def load_planning_model(run: str, device: torch.device) -> torch.nn.Module:
    """The world model at ``run`` (a directory or a shipped name), checked to be plannable."""
    directory = resolve_model(run)
    family = read_checkpoint_config(directory)["family"]
    if family not in PLANNING_FAMILIES:
        raise UserInputError(f"{run}: a {family!r} checkpoint; plan needs an action-conditioned world model "
                             f"({', '.join(PLANNING_FAMILIES)})")
    return load_pretrained(directory).to(device).eval()


def _objective(cfg: PlanConfig, has_goal: bool, has_reward: bool) -> str:
    objective = cfg.objective
    if objective == "auto":
        objective = "goal" if has_goal else "reward"
    if "goal" in objective and not has_goal:
        raise UserInputError(f"objective {objective!r}: env {cfg.env!r} gives no goal; pass --goal IMAGE")
    if "reward" in objective and not has_reward:
        raise UserInputError(f"objective {objective!r}: the model has no reward head (train it with --reward-head)")
    return objective


def _check(cfg: PlanConfig) -> None:
    if cfg.goal is not None and cfg.env.startswith("tworooms"):
        raise UserInputError("--goal: Two-Rooms draws each episode's goal and judges success by it; "
                             "--goal is for gym:<id> envs")
    for name in ("episodes", "horizon", "action_repeat", "samples", "iterations", "elites", "replan_every"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"{name} {getattr(cfg, name)}: must be at least 1")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise UserInputError(f"max_steps {cfg.max_steps}: must be at least 1")
    if cfg.seed < 0:
        raise UserInputError(f"seed {cfg.seed}: must be >= 0")


@dataclass
class EpisodeResult:
    success: bool
    steps: int
    seconds: float
    positions: list[list[float]]


def plan_episodes(cfg: PlanConfig) -> dict[str, Any]:
    """Run ``cfg.episodes`` MPC episodes; returns the metrics (also written to ``cfg.json``)."""
    _check(cfg)
    device = resolve_device(cfg.device)
    model = load_planning_model(cfg.run, device)
    size = model.config.frame_shape[0]
    goal_frame = load_goal_image(cfg.goal, size) if cfg.goal is not None else None
    env, to_frame, max_norm = make_env(cfg.env, size, cfg.max_steps)
    try:
        check_action_space(model.action_space, env.action_space, f"env {cfg.env!r}")
        env_goals = goal_frame is None and hasattr(env.unwrapped, "render_goal")
        objective = _objective(cfg, goal_frame is not None or env_goals, model.reward is not None)
        spec = ActionSpec.from_gym(env.action_space, max_norm=max_norm)
        planner_cfg = PlannerConfig(name=cfg.planner, horizon=cfg.horizon, action_repeat=cfg.action_repeat,
                                    samples=cfg.samples, iterations=cfg.iterations, elites=min(cfg.elites, cfg.samples),
                                    temperature=cfg.temperature, device="cpu")
        planner_cfg.check()
        mpc = MPC(make_planner(planner_cfg, spec), MPCConfig(replan_every=cfg.replan_every,
                                                             first_iterations=cfg.first_iterations))
        generator = torch.Generator().manual_seed(cfg.seed)
        results: list[EpisodeResult] = []
        pictures: list[np.ndarray] = []
        with _EpisodeBar(cfg.episodes, cfg.progress) as bar, torch.no_grad():
            for i in range(cfg.episodes):
                obs, info = env.reset(seed=cfg.seed + i)
                goal_img = goal_frame if goal_frame is not None else (
                    np.asarray(env.unwrapped.render_goal()) if env_goals else None)
                goal = embed_frame(model, goal_img, device) if "goal" in objective else None
                result = _episode(env, obs, info, model, mpc, goal, objective, to_frame, cfg, device, generator)
                results.append(result)
                if env_goals and len(pictures) < 16:
                    pictures.append(_path_picture(goal_img, result.positions))
                bar.advance(float(np.mean([r.success for r in results])))
    finally:
        env.close()
    metrics: dict[str, Any] = {
        "success_rate": float(np.mean([r.success for r in results])),
        "mean_steps": float(np.mean([r.steps for r in results])),
        "mean_steps_success": (float(np.mean([r.steps for r in results if r.success]))
                               if any(r.success for r in results) else None),
        "seconds_per_plan": float(np.mean(mpc.plan_seconds)) if mpc.plan_seconds else 0.0,
        "seconds_per_episode": float(np.mean([r.seconds for r in results])),
        "plan_calls": len(mpc.plan_seconds),
        "episodes": cfg.episodes, "seeds": [cfg.seed, cfg.seed + cfg.episodes],
        "env": cfg.env, "run": cfg.run, "objective": objective,
        "planner": asdict(planner_cfg), "replan_every": cfg.replan_every,
        "steps_per_plan": mpc.steps_per_plan, "first_iterations": cfg.first_iterations,
        "threads": torch.get_num_threads(), "device": str(device),
        "per_episode": [{"seed": cfg.seed + i, "success": r.success, "steps": r.steps} for i, r in enumerate(results)],
    }
    if cfg.json is not None:
        if pictures:
            rows = [np.stack(pictures[r:r + 8]) for r in range(0, len(pictures), 8)]
            if len(rows) > 1 and len(rows[-1]) < len(rows[0]):
                rows = rows[:-1]
            metrics["paths"] = str(save_image_grid(rows, cfg.json.with_name(cfg.json.stem + "_paths.png"), scale=3))
        write_json_atomic(cfg.json, metrics)
    return metrics


class _EpisodeBar:
    """Episodes done and the success rate so far, on stderr; silent when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._progress = Progress(TextColumn("[bold]plan"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("success {task.fields[rate]:.2f}"), TimeRemainingColumn(),
                                  console=Console(stderr=True), disable=not enabled)
        self._task = self._progress.add_task("plan", total=total, rate=0.0)

    def __enter__(self) -> "_EpisodeBar":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, rate: float) -> None:
        self._progress.update(self._task, advance=1, rate=rate)


def _episode(env: gym.Env, obs: Any, info: dict, model: torch.nn.Module, mpc: MPC, goal: torch.Tensor | None,
             objective: str, to_frame: Callable, cfg: PlanConfig, device: torch.device,
             generator: torch.Generator) -> EpisodeResult:
    started = time.perf_counter()
    mpc.reset()
    positions = [list(map(float, info["position"]))] if "position" in info else []
    budget = cfg.max_steps if cfg.max_steps is not None else math.inf
    steps, success = 0, False
    while steps < budget:
        cost = PlanningCost(model, to_frame(env, obs), goal, objective, device, cfg.distance, cfg.over_horizon)
        action = mpc.act(cost, generator)
        act = int(action) if isinstance(env.action_space, gym.spaces.Discrete) else action.numpy().astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(act)
        steps += 1
        if "position" in info:
            positions.append(list(map(float, info["position"])))
        if episode_success(info, terminated, float(reward)):
            success = True
            break
        if terminated or truncated:
            break
    return EpisodeResult(success, steps, time.perf_counter() - started, positions)


def _path_picture(goal_frame: np.ndarray, positions: list[list[float]]) -> np.ndarray:
    """The goal frame with the path drawn on it: yellow where the agent went, the start white."""
    picture = goal_frame.copy()
    h, w = picture.shape[:2]
    for k, (x, y) in enumerate(positions):
        col, row = int(round(x)), int(round(y))
        if 0 <= row < h and 0 <= col < w:
            picture[row, col] = (255, 255, 255) if k == 0 else (255, 220, 0)
    return picture
