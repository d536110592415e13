"""What the JEPA world model costs (issue 4, point 7): training per frame, and one plan call.

Training: one optimizer step of a preset's action-conditioned world model exactly as `nextworld
train jepa` takes it (the recipe's batch of ``rollout_steps + 1``-frame Two-Rooms clips, AdamW,
clipping, the EMA update when the regularizer is ``ema``), as the median of ``--steps`` steps
after ``--warmup``; reported per step, per frame (batch x clip length) and for the whole recipe.
For comparison, worldkit 0.2.0's 3.5M-parameter model takes 4.2 ms per frame on this machine
(issue 4).

Planning: one call of `nextworld plan`'s planner with its default settings (MPPI, 256
candidates, 24 decisions x 4 steps, 3 iterations, plus the final evaluation of the mean),
rolling the model forward for all candidates at once, as the median of ``--plans`` calls.
Neither depends on the weights, so an untrained model is timed.

    python benchmarks/jepa_cost.py [--preset tiny] [--objective jepa|generative] [--regularizer vicreg]

Prints one JSON line and a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from nextworld.data.tasks.tworooms import MAX_STEP_NORM, TwoRoomsEnv
from nextworld.models.jepa.training import RECIPES, WORLD_PRESETS
from nextworld.models.jepa.world_model import JEPAWorldModel
from nextworld.planning.episodes import PlanConfig, PlanningCost, embed_frame
from nextworld.planning.planners import ActionSpec, PlannerConfig, make_planner
from step_timing import time_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(WORLD_PRESETS))
    parser.add_argument("--objective", default="jepa", choices=["jepa", "generative"])
    parser.add_argument("--regularizer", default=None, choices=["vicreg", "ema", "sigreg"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--plans", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    overrides = {"objective": args.objective, "action_low": (-MAX_STEP_NORM,) * 2, "action_high": (MAX_STEP_NORM,) * 2}
    if args.regularizer is not None:
        overrides["regularizer"] = args.regularizer
    cfg = dataclasses.replace(WORLD_PRESETS[args.preset], **overrides)
    model = JEPAWorldModel(cfg)
    recipe = RECIPES[args.preset]["world"]
    clip = cfg.rollout_steps + 1
    env = TwoRoomsEnv()
    frames = []
    for seed in range(recipe.batch_size):  # real Two-Rooms frames (the cost does not depend on them)
        obs, _ = env.reset(seed=seed)
        frames.append(np.stack([obs] * clip))
    batch = {"frames": torch.from_numpy(np.stack(frames)),
             "actions": (torch.rand(recipe.batch_size, clip, 2) * 2 - 1) * MAX_STEP_NORM / 1.5,
             "rewards": torch.zeros(recipe.batch_size, clip)}
    step = time_steps(model, lambda: batch, recipe, args.steps, args.warmup)

    plan = PlanConfig(run="")
    planner = make_planner(PlannerConfig(name=plan.planner, horizon=plan.horizon, action_repeat=plan.action_repeat,
                                         samples=plan.samples, iterations=plan.iterations, elites=plan.elites,
                                         temperature=plan.temperature),
                           ActionSpec.from_gym(env.action_space, max_norm=MAX_STEP_NORM))
    model.eval()
    obs, _ = env.reset(seed=0)
    goal = embed_frame(model, env.render_goal(), torch.device("cpu"))
    times = []
    with torch.no_grad():
        for i in range(args.plans + 2):
            start = time.perf_counter()
            planner.plan(PlanningCost(model, obs, goal, "goal", torch.device("cpu"), plan.distance, plan.over_horizon),
                         generator=torch.Generator().manual_seed(i))
            if i >= 2:
                times.append(time.perf_counter() - start)
    result = {
        "preset": args.preset, "objective": cfg.objective, "regularizer": cfg.regularizer,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch_size": recipe.batch_size, "clip_frames": clip, "seconds_per_step": round(step, 4),
        "ms_per_frame": round(1000 * step / (recipe.batch_size * clip), 4), "recipe_steps": recipe.steps,
        "recipe_minutes": round(step * recipe.steps / 60, 1), "seconds_per_plan": round(statistics.median(times), 4),
        "plan": {"planner": plan.planner, "samples": plan.samples, "horizon": plan.horizon,
                 "action_repeat": plan.action_repeat, "iterations": plan.iterations},
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
    }
    print(json.dumps(result))
    print(f"training: {result['seconds_per_step']:.3f} s/step = {result['ms_per_frame']:.3f} ms/frame "
          f"({result['params'] / 1e6:.2f}M params, batch {recipe.batch_size} x {clip} frames); "
          f"recipe {recipe.steps} steps = {result['recipe_minutes']} min")
    print(f"planning: {result['seconds_per_plan']:.4f} s per plan call")


if __name__ == "__main__":
    main()
