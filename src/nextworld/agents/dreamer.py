"""``nextworld train dreamer``: DreamerV3's online loop, and the evaluation of its agents.

The loop: act in the env (a uniform random policy for the first ``prefill`` steps, then the
actor, sampling), add every step to the replay buffer (``nextworld.data.replay``), and after
each env step add ``train_ratio / (batch_size * seq_len)`` to a credit of updates, running
one update per whole unit: a world-model step on sequences replayed from the buffer, then
an actor-critic step on rollouts imagined from every state of that batch. So
``train_ratio`` is the number of replayed steps per env step, DreamerV3's definition.

Run directory::

    config.json, model.safetensors   the agent (family ``dreamer``), at every checkpoint
    world.json                       marks the run as a playable world (its world model)
    training_state/                  optimizer, generators, counters (see train/checkpoint.py)
    replay/                          every completed episode, an episode dataset (the shared format)
    metrics.jsonl, tb/               losses per update window and evaluations, by env step
    curve.png                        the evaluations so far: success rate and mean return by env step

``--resume`` reloads the agent, the optimizer and the replay, and goes on from the saved env
step. The episode running at the checkpoint is not in the replay and the env starts a new
one, so a resumed run is a faithful continuation but not a bit-exact one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from nextworld.agents.envs import PixelEnv, make_pixel_env
from nextworld.atomic_files import write_json_atomic
from nextworld.data.episode_format import parse_range, space_to_json
from nextworld.data.replay import Replay
from nextworld.errors import UserInputError
from nextworld.eval.curves import save_curves
from nextworld.models.base import config_to_dict, load_pretrained, read_checkpoint_config, save_pretrained
from nextworld.models.dreamer import DreamerAgent, DreamerConfig
from nextworld.train.checkpoint import STATE_DIR, TrainingState, load_optimizer_state, load_training_state, recover, \
    save_training_state
from nextworld.train.distributed import resolve_device
from nextworld.train.interrupt import StopSignals
from nextworld.train.metrics_log import METRICS_NAME, MetricsLog, read_records
from nextworld.train.rng import capture_rng, derive_seed, restore_rng, seed_everything

REPLAY_DIR = "replay"
WORLD_FILE = "world.json"


@dataclass
class DreamerRecipe:
    """How a preset trains: replay sampling, update rate and optimisation."""

    batch_size: int = 16
    """Sequences per update."""
    seq_len: int = 32
    """Steps per replayed sequence."""
    train_ratio: float = 64.0
    """Replayed steps per env step (updates happen every batch_size * seq_len / train_ratio env steps)."""
    prefill: int = 1000
    """Env steps of a uniform random policy before the first update."""
    model_lr: float = 3e-4
    """Adam learning rate of the world model."""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-4
    """Adam learning rate of the critic."""
    model_eps: float = 1e-8
    """Adam epsilon of the world model."""
    ac_eps: float = 1e-5
    """Adam epsilon of the actor and the critic."""
    model_clip: float = 1000.0
    """Gradient norm clip of the world model."""
    ac_clip: float = 100.0
    """Gradient norm clip of the actor and of the critic."""
    replay_capacity: int = 1_000_000
    """Steps the buffer keeps (the oldest go first)."""


PRESETS: dict[str, tuple[DreamerConfig, DreamerRecipe]] = {
    "tiny": (DreamerConfig(), DreamerRecipe()),
    "small": (DreamerConfig(depth=32, deter=512, hidden=512, units=512), DreamerRecipe(seq_len=64, train_ratio=256.0)),
}
"""``tiny``: for 2 CPU cores (the sizes of DreamerConfig's defaults); ``small``: DreamerV3's S size
(depth 32, 512 units) for a GPU."""


@dataclass
class DreamerTrainConfig:
    """Train a Dreamer agent online: act in an env, learn a world model from replay, and an actor-critic in imagination."""

    env: str
    """gym:<env-id> (e.g. gym:MiniGrid-Empty-8x8-v0), coinrun or procgen:<game>."""
    out: Path
    """Run directory to create (or to continue with --resume)."""
    env_steps: int = 30_000
    """Env steps to train for in total, counting those before a resume."""
    preset: Literal["tiny", "small"] = "tiny"
    """Model sizes and recipe: tiny for 2 CPU cores, small for a GPU."""
    levels: str = "0:10000"
    """Procgen: the training levels A:B (held-out evaluation levels start at --eval-seed)."""
    seed: int = 0
    """Seeds the policy, the replay sampling, the weights and the env."""
    train_ratio: float | None = None
    """Replayed steps per env step (the preset's when unset)."""
    prefill: int | None = None
    """Random-policy env steps before training starts (the preset's when unset)."""
    eval_every: int = 5000
    """Env steps between evaluations (0: none during training)."""
    eval_episodes: int = 10
    """Episodes per evaluation during training."""
    eval_seed: int = 100_000
    """Evaluation episode i uses seed (Procgen: level) eval_seed + i, never trained on."""
    ckpt_every: int = 2500
    """Env steps between checkpoints; one is also written at the end and on Ctrl-C / SIGTERM."""
    log_every: int = 500
    """Env steps between metric records."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint, with its own recipe (--train-ratio and
    --prefill change it when given)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class DreamerResult:
    env_steps: int
    updates: int
    seconds: float
    """Wall-clock seconds of this call."""
    interrupted: bool
    run_dir: Path
    last_eval: dict[str, float]


# ---------------------------------------------------------------------------- evaluation


def run_episodes(env: PixelEnv, act: Any, episodes: int, seed: int, max_steps: int | None = None
                 ) -> list[dict[str, Any]]:
    """Play ``episodes`` episodes, episode i reset with ``seed + i``; ``act(frame, is_first) -> action``."""
    results = []
    for i in range(episodes):
        frame, first = env.reset(seed + i), True
        total, steps, success = 0.0, 0, False
        while True:
            frame, reward, terminated, truncated, success = env.step(act(frame, first))
            first = False
            total += reward
            steps += 1
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                break
        results.append({"seed": seed + i, "return": total, "length": steps, "success": bool(success)})
    return results


def agent_policy(agent: DreamerAgent, mode: bool = False, generator: torch.Generator | None = None) -> Any:
    """A policy ``(frame, is_first) -> env action`` that keeps the agent's filter state between calls."""
    device = agent.world_model.device
    holder: dict[str, Any] = {"state": None}

    def act(frame: np.ndarray, is_first: bool) -> Any:
        state, action = agent.policy_step(None if is_first else holder["state"], torch.tensor(frame), is_first,
                                          mode=mode, generator=generator)
        holder["state"] = state
        return _to_env(action.to(device))

    return act


def random_policy(space: gym.Space, seed: int) -> Any:
    """A uniform random policy, seeded."""
    space = _seeded_copy(space, seed)
    return lambda frame, is_first: space.sample()


def _seeded_copy(space: gym.Space, seed: int) -> gym.Space:
    space = gym.spaces.Discrete(int(space.n)) if isinstance(space, gym.spaces.Discrete) else \
        gym.spaces.Box(space.low, space.high, space.shape, space.dtype)
    space.seed(seed)
    return space


def _to_env(action: torch.Tensor) -> Any:
    return int(action.item()) if action.dim() == 0 else action.cpu().numpy().astype(np.float32)


def summarise(results: list[dict[str, Any]], prefix: str = "") -> dict[str, float]:
    """Mean return (and its standard error over episodes), success rate and mean length."""
    returns = np.asarray([r["return"] for r in results], np.float64)
    stderr = float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else 0.0
    return {f"{prefix}mean_return": float(returns.mean()), f"{prefix}return_stderr": stderr,
            f"{prefix}success_rate": float(np.mean([r["success"] for r in results])),
            f"{prefix}mean_length": float(np.mean([r["length"] for r in results]))}


# ---------------------------------------------------------------------------- training


class _Learner:
    """The agent, its optimizer (one Adam, a parameter group each for model, actor and critic) and one update."""

    def __init__(self, agent: DreamerAgent, recipe: DreamerRecipe) -> None:
        self.agent, self.recipe = agent, recipe
        self.groups = {"model": list(agent.world_model.parameters()), "actor": list(agent.actor.parameters()),
                       "critic": list(agent.critic.parameters())}
        self.optimizer = torch.optim.Adam([
            {"params": self.groups["model"], "lr": recipe.model_lr, "eps": recipe.model_eps},
            {"params": self.groups["actor"], "lr": recipe.actor_lr, "eps": recipe.ac_eps},
            {"params": self.groups["critic"], "lr": recipe.critic_lr, "eps": recipe.ac_eps}])
        self.clips = {"model": recipe.model_clip, "actor": recipe.ac_clip, "critic": recipe.ac_clip}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        agent = self.agent
        model_loss, metrics, posterior = agent.world_model.loss(batch)
        actor_loss, critic_loss, behavior = agent.behavior_losses(posterior, batch["is_terminal"])
        self.optimizer.zero_grad(set_to_none=True)
        # each part's gradient reaches its own parameters only (the actor's, for Box actions, flows
        # through the world model's dynamics, which it must not train)
        for name, loss in (("model", model_loss), ("actor", actor_loss), ("critic", critic_loss)):
            params = self.groups[name]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = g
            norm = nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.clips[name])
            metrics[f"charts/grad_norm_{name}"] = norm
        self.optimizer.step()
        agent.update_slow_critic()
        metrics.update(behavior)
        metrics["losses/model"] = model_loss.detach()
        return {k: float(v) for k, v in metrics.items()}


def _batch_to_torch(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value).to(device) for key, value in batch.items()}


def _with_overrides(recipe: DreamerRecipe, cfg: DreamerTrainConfig) -> DreamerRecipe:
    """``recipe`` with what this command sets explicitly (``--train-ratio``, ``--prefill``) changed."""
    overrides = {k: v for k, v in (("train_ratio", cfg.train_ratio), ("prefill", cfg.prefill)) if v is not None}
    return dataclasses.replace(recipe, **overrides)


def _preset(cfg: DreamerTrainConfig, space: gym.Space) -> tuple[DreamerConfig, DreamerRecipe]:
    model, recipe = PRESETS[cfg.preset]
    return dataclasses.replace(model, action_space=space_to_json(space)), _with_overrides(recipe, cfg)


def _check(cfg: DreamerTrainConfig) -> None:
    for name in ("env_steps", "eval_episodes", "log_every"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"{name} {getattr(cfg, name)}: must be at least 1")
    for name in ("eval_every", "ckpt_every", "seed"):
        if getattr(cfg, name) < 0:
            raise UserInputError(f"{name} {getattr(cfg, name)}: must be >= 0")
    if cfg.train_ratio is not None and cfg.train_ratio <= 0:
        raise UserInputError(f"train_ratio {cfg.train_ratio}: must be > 0")
    if cfg.prefill is not None and cfg.prefill < 0:
        raise UserInputError(f"prefill {cfg.prefill}: must be >= 0")
    if cfg.resume:
        if not (cfg.out / STATE_DIR).exists() and not any(cfg.out.glob(f".{STATE_DIR}.old-*")):
            raise UserInputError(f"{cfg.out}: no {STATE_DIR}/ to resume from")
    elif cfg.out.exists() and any(cfg.out.iterdir()):
        raise UserInputError(f"{cfg.out}: exists; pass --resume or choose another --out")


def train_dreamer(cfg: DreamerTrainConfig) -> DreamerResult:
    """Train online for ``cfg.env_steps`` env steps into ``cfg.out`` (see the module docstring)."""
    started = time.perf_counter()
    _check(cfg)
    kind = "procgen" if cfg.env == "coinrun" or cfg.env.startswith("procgen:") else "gym"
    train_levels = parse_range(cfg.levels, "levels") if kind == "procgen" else None
    env = make_pixel_env(cfg.env, levels=train_levels)
    eval_env = make_pixel_env(cfg.env) if cfg.eval_every else None
    try:
        return _train(cfg, env, eval_env, started)
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()


def _train(cfg: DreamerTrainConfig, env: PixelEnv, eval_env: PixelEnv | None, started: float) -> DreamerResult:
    device = resolve_device(cfg.device)
    model_cfg, recipe = _preset(cfg, env.action_space)
    run_dir = cfg.out
    counters = {"env_steps": 0, "updates": 0, "episodes": 0, "seconds": 0.0, "credit": 0.0}
    with torch.random.fork_rng(devices=[]):
        seed_everything(derive_seed(cfg.seed, 0))
        agent = DreamerAgent(model_cfg).to(device)
    learner = _Learner(agent, recipe)
    replay = Replay(agent.world_model.frame_shape, env.action_space, recipe.replay_capacity)
    state = None
    if cfg.resume:
        recover(run_dir)
        state = load_training_state(run_dir, required_meta={"family": str, "model_config": dict, "counters": dict})
        if state.meta["family"] != "dreamer":
            raise UserInputError(f"{run_dir}: a {state.meta['family']!r} run, not a dreamer one")
        if json.loads(json.dumps(config_to_dict(model_cfg))) != state.meta["model_config"]:
            raise UserInputError(f"{run_dir}: trained with another model config (preset or env); resume with the same")
        agent.load_state_dict(state.model)
        load_optimizer_state(learner.optimizer, state.optimizer, run_dir / STATE_DIR / "optimizer.safetensors")
        counters.update(state.meta["counters"])
        # the run's own recipe, with only what this command sets explicitly changed
        saved = DreamerRecipe(**{k: v for k, v in state.meta.get("recipe", {}).items()
                                 if k in {f.name for f in dataclasses.fields(DreamerRecipe)}})
        recipe = _with_overrides(saved, cfg)
        learner.recipe = recipe
        learner.clips = {"model": recipe.model_clip, "actor": recipe.ac_clip, "critic": recipe.ac_clip}
        replay.load(run_dir / REPLAY_DIR)
        restore_rng(state.rng[0], device)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(derive_seed(cfg.seed, 1))
    sample_rng = np.random.default_rng(derive_seed(cfg.seed, 2, counters["updates"]))
    explore = _seeded_copy(env.action_space, derive_seed(cfg.seed, 3, counters["env_steps"]) % 2**31)
    fps = float(getattr(env, "fps", 15.0))
    source = {"kind": "dreamer", "env": cfg.env, "seed": cfg.seed}
    per_update = recipe.batch_size * recipe.seq_len
    resumed_at = counters["env_steps"]
    session_started = time.perf_counter()
    last_eval: dict[str, float] = {}
    window: list[dict[str, float]] = []
    recent: list[dict[str, Any]] = []

    def elapsed() -> float:
        return counters["seconds"] + time.perf_counter() - session_started

    def checkpoint(metrics: dict[str, float]) -> None:
        replay.flush(run_dir / REPLAY_DIR, fps=fps, source=source)
        meta = {"family": "dreamer", "model_config": config_to_dict(model_cfg), "env": cfg.env,
                "recipe": dataclasses.asdict(recipe), "counters": {**counters, "seconds": elapsed()},
                "metrics": metrics}
        save_training_state(run_dir, TrainingState(counters["updates"], agent.state_dict(),
                                                   learner.optimizer.state_dict(), [capture_rng(device)], meta))
        save_pretrained(agent, run_dir, "dreamer", extra={"env": cfg.env, "recipe": dataclasses.asdict(recipe),
                                                          "counters": {**counters, "seconds": elapsed()}})
        write_json_atomic(run_dir / WORLD_FILE, {"format": "nextworld-world", "family": "dreamer"})

    def evaluate_now() -> dict[str, float]:
        agent.eval()
        try:
            results = run_episodes(eval_env, agent_policy(agent), cfg.eval_episodes, cfg.eval_seed)
        finally:
            agent.train()
        return {f"eval/{k}": v for k, v in summarise(results).items()}

    interrupted = False
    with StopSignals() as stop, \
            MetricsLog(run_dir, resumed_step=resumed_at if cfg.resume else None, enabled=True) as log, \
            _progress(cfg, resumed_at) as (bar, task):
        curve = _read_curve(run_dir / METRICS_NAME)  # after MetricsLog dropped what followed the checkpoint
        if not cfg.resume:
            checkpoint({})
        frame = env.reset(derive_seed(cfg.seed, 4, counters["episodes"]) % 2**31)
        replay.add(frame, 0, 0.0, True, False, False)
        policy_state, first, ep_return, ep_len = None, True, 0.0, 0
        while counters["env_steps"] < cfg.env_steps and not stop.requested:
            if counters["env_steps"] < recipe.prefill:
                action = explore.sample()
            else:
                policy_state, act = agent.policy_step(policy_state, torch.tensor(frame), first)
                action = _to_env(act)
            frame, reward, terminated, truncated, success = env.step(action)
            first = False
            counters["env_steps"] += 1
            ep_return += reward
            ep_len += 1
            done = terminated or truncated
            replay.add(frame, action, reward, False, terminated, done)
            if done:
                counters["episodes"] += 1
                recent = (recent + [{"return": ep_return, "length": ep_len, "success": success}])[-20:]
                frame = env.reset(derive_seed(cfg.seed, 4, counters["episodes"]) % 2**31)
                replay.add(frame, 0, 0.0, True, False, False)
                policy_state, first, ep_return, ep_len = None, True, 0.0, 0
            if counters["env_steps"] >= recipe.prefill and replay.size >= recipe.seq_len:
                counters["credit"] += recipe.train_ratio / per_update
                while counters["credit"] >= 1:
                    batch = _batch_to_torch(replay.sample(recipe.batch_size, recipe.seq_len, sample_rng), device)
                    window.append(learner.update(batch))
                    counters["updates"] += 1
                    counters["credit"] -= 1
            step = counters["env_steps"]
            finished = step == cfg.env_steps or stop.requested
            record: dict[str, float] = {}
            if eval_env is not None and (step % cfg.eval_every == 0 or (finished and not stop.requested)):
                last_eval = evaluate_now()
                record.update(last_eval)
                curve.append((step, last_eval["eval/success_rate"], last_eval["eval/mean_return"]))
                save_curves({"eval success rate": [(x, s) for x, s, _ in curve],
                             "eval mean return": [(x, r) for x, _, r in curve]}, run_dir / "curve.png",
                            title=f"dreamer on {cfg.env}: evaluation ({cfg.eval_episodes} episodes, seeds "
                                  f"{cfg.eval_seed}+)", x_label="env steps")
            if step % cfg.log_every == 0 or finished or record:
                if window:
                    record.update({k: float(np.mean([w[k] for w in window if k in w])) for k in window[-1]})
                    window = []
                if recent:
                    record.update(summarise(recent, "train/"))
                record.update({"charts/updates": counters["updates"], "charts/episodes": counters["episodes"],
                               "perf/seconds": elapsed(),
                               "perf/env_steps_per_second": (step - resumed_at) / (time.perf_counter() - session_started)})
                log.write(step, record)
            bar.update(task, completed=step, info=_bar_info(recent, last_eval, counters))
            if finished or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
                checkpoint(record)
        interrupted = stop.requested
    return DreamerResult(env_steps=counters["env_steps"], updates=counters["updates"],
                         seconds=time.perf_counter() - started, interrupted=interrupted, run_dir=run_dir,
                         last_eval=last_eval)


def _read_curve(path: Path) -> list[tuple[int, float, float]]:
    """(env step, eval success rate, eval mean return) of the evaluations logged so far."""
    return [(int(r["step"]), r["eval/success_rate"], r["eval/mean_return"])
            for r in read_records(path) if "eval/success_rate" in r]


def _bar_info(recent: list[dict[str, Any]], last_eval: dict[str, float], counters: dict[str, Any]) -> str:
    parts = [f"{counters['updates']} updates"]
    if recent:
        parts.append(f"return {np.mean([r['return'] for r in recent]):.2f}")
    if last_eval:
        parts.append(f"eval success {last_eval['eval/success_rate']:.2f}")
    return ", ".join(parts)


class _progress:
    def __init__(self, cfg: DreamerTrainConfig, start: int) -> None:
        self.bar = Progress(TextColumn("[bold]dreamer"), BarColumn(), MofNCompleteColumn(), TextColumn("env steps"),
                            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                            disable=not cfg.progress)
        self.task = self.bar.add_task("dreamer", total=cfg.env_steps, completed=start, info="")

    def __enter__(self) -> tuple[Progress, Any]:
        self.bar.start()
        return self.bar, self.task

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


# ---------------------------------------------------------------------------- evaluation of a run


def load_agent(run: str | Path, device: str = "cpu") -> tuple[DreamerAgent, dict[str, Any]]:
    """A trained Dreamer run's agent and its config.json payload."""
    payload = read_checkpoint_config(run)
    if payload["family"] != "dreamer":
        raise UserInputError(f"{run}: a {payload['family']!r} checkpoint, not a dreamer run")
    agent = load_pretrained(run, "dreamer", map_location=resolve_device(device))
    agent.eval()
    return agent, payload


def evaluate_agent(run: str | Path, env_name: str, episodes: int, seed: int, *, mode: bool = False,
                   device: str = "cpu", max_steps: int | None = None) -> dict[str, Any]:
    """Play ``episodes`` episodes of ``env_name`` (seeds or levels ``seed + i``) with the run's actor and
    with a uniform random policy on the same seeds; the metrics of issue 5."""
    from nextworld.models.base import check_action_space

    agent, payload = load_agent(run, device)
    env = make_pixel_env(env_name)
    try:
        check_action_space(agent.action_space, env.action_space, f"env {env_name}")
        generator = torch.Generator(device=agent.world_model.device).manual_seed(seed)
        with torch.no_grad():
            learned = run_episodes(env, agent_policy(agent, mode=mode, generator=generator), episodes, seed, max_steps)
        rand = run_episodes(env, random_policy(env.action_space, seed), episodes, seed, max_steps)
    finally:
        env.close()
    counters = payload.get("counters", {})
    env_steps = int(counters.get("env_steps", 0))
    seconds = float(counters.get("seconds", 0.0))
    baseline = summarise(rand)
    out = {**summarise(learned), "random_mean_return": baseline["mean_return"],
           "random_return_stderr": baseline["return_stderr"], "random_success_rate": baseline["success_rate"],
           "env_steps": env_steps,
           "env_steps_per_second": env_steps / seconds if seconds > 0 else 0.0,
           "training_minutes": seconds / 60, "episodes": episodes, "seed": seed, "env": env_name,
           "policy": "mode" if mode else "sample", "per_episode": learned, "random_per_episode": rand}
    return out
