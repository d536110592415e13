"""What a Genie preset's recipe costs to train (issue 3, point 5: ``tiny`` in at most 60 minutes).

Times each stage's training step exactly as ``nextworld train genie`` runs it (the preset's
model, the recipe's batch size and clip length, AdamW, gradient clipping; for the dynamics
stage the frozen tokenizer and latent action model that turn each batch into tokens and
actions, and the moved frames' tokens of a motion-compensated dynamics) on random frames, as the median of ``--steps`` steps after ``--warmup``, and
multiplies by the recipe's step count. Step time does not depend on the pixels.

    python benchmarks/genie_recipe_cost.py [--preset tiny] [--steps 10] [--warmup 3] [--device cpu]

Prints one JSON line and a table: seconds per step, steps, and minutes per stage and in all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch

from nextworld.models.genie import LatentActionModel, VideoTokenizer
from nextworld.models.genie.dynamics import GenieDynamics
from nextworld.models.genie.presets import LAM_PRESETS, TOKENIZER_PRESETS, dynamics_config
from nextworld.models.genie.training import RECIPES, DynamicsInputs
from step_timing import time_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    recipes = RECIPES[args.preset]
    tokenizer = VideoTokenizer(TOKENIZER_PRESETS[args.preset])
    lam = LatentActionModel(LAM_PRESETS[args.preset])
    # a LAM that names camera shifts (motion_weight) gets a motion-compensated dynamics, as in training; the
    # shifts themselves (training measures them on its clips, modal_action_shifts, about 24 s) do not change a step's cost
    dynamics = GenieDynamics(dynamics_config(args.preset, tokenizer.config, tokenizer.num_codes, lam.num_actions,
                                             lam.action_shifts()))
    h, w, c = tokenizer.config.frame_shape

    def frames(stage: str, length: int):
        batch = recipes[stage].train.batch_size
        return lambda: {"frames": torch.randint(0, 256, (batch, length, h, w, c), dtype=torch.uint8)}

    inputs = DynamicsInputs(VideoTokenizer(TOKENIZER_PRESETS[args.preset]), LatentActionModel(LAM_PRESETS[args.preset]),
                            dynamics.config.shift_table())
    dynamics_frames = frames("dynamics", dynamics.config.max_frames)

    def dynamics_batch():
        with torch.no_grad():
            return inputs(dynamics_frames())

    stages = {
        "tokenizer": (tokenizer, frames("tokenizer", recipes["tokenizer"].window.length)),
        "lam": (lam, frames("lam", lam.config.max_frames)),
        "dynamics": (dynamics, dynamics_batch),
    }
    result = {"preset": args.preset, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "stages": {}}
    for name, (model, make_batch) in stages.items():
        cfg = recipes[name].train
        seconds = time_steps(model, make_batch, cfg, args.steps, args.warmup)
        result["stages"][name] = {"seconds_per_step": round(seconds, 4), "steps": cfg.steps,
                                  "batch_size": cfg.batch_size, "minutes": round(seconds * cfg.steps / 60, 1),
                                  "params": sum(p.numel() for p in model.parameters())}
    result["total_minutes"] = round(sum(s["minutes"] for s in result["stages"].values()), 1)
    print(json.dumps(result))
    for name, s in result["stages"].items():
        print(f"{name:10s} {s['seconds_per_step']:.3f} s/step x {s['steps']:6d} steps = {s['minutes']:5.1f} min "
              f"({s['params'] / 1e6:.2f}M params, batch {s['batch_size']})")
    print(f"{'total':10s} {result['total_minutes']:.1f} min on {result['threads']} threads")


if __name__ == "__main__":
    main()
