"""Choose a Genie world's default sampling (MaskGIT steps, temperature, keep bias) on a validation split.

    python scripts/choose_sampling.py WORLD_DIR --data VALIDATION [--steps 1,2,4,8] [--temperatures 0,0.5,1]
        [--keep-biases 0] [--tolerance 0.5] [--reuse-grid]

Evaluates every combination on ``VALIDATION`` (episodes of *training* levels that training
did not use; never the held-out levels the targets are reported on) and picks the fewest
MaskGIT steps whose ``psnr_t10`` is within ``--tolerance`` dB of the best, then the lowest
temperature (greedy sampling is deterministic and draws nothing), then the keep bias with the
highest ``psnr_t10`` (a bias costs nothing): each step is one more pass of
the dynamics per frame, and play (the web player's 15 frames a second) needs them few. Keep
biases other than 0 need a motion-compensated (``copy_path``) dynamics. It writes the choice as the world's ``sampling`` in
``WORLD_DIR/world.json`` together with the whole grid, so the choice and its evidence travel
with the world. ``--reuse-grid`` decides again from the grid already there, without evaluating.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from nextworld.atomic_files import write_json_atomic
from nextworld.eval.evaluate import EvalConfig, evaluate
from nextworld.models.genie.world import WORLD_FILE

KEYS = ("psnr_t1", "psnr_t4", "psnr_t10", "delta_psnr_t4")


def evaluate_grid(world: Path, data: Path, steps: list[int], temperatures: list[float], keep_biases: list[float],
                  seed: int) -> list[dict]:
    grid = []
    for s, t, b in itertools.product(steps, temperatures, keep_biases):
        metrics = evaluate(EvalConfig(run=world, data=data, sample_steps=s, temperature=t, keep_bias=b,
                                      action_clips=64, fps_steps=8, seed=seed, progress=False))
        row = {"sample_steps": s, "temperature": t, "keep_bias": b, **{k: round(metrics[k], 4) for k in KEYS}}
        print(json.dumps(row), flush=True)
        grid.append(row)
    return grid


def choose(grid: list[dict], data: str, tolerance: float) -> dict:
    """The fewest steps within ``tolerance`` dB of the best psnr_t10, then the lowest temperature,
    then the best keep bias (rows without one, from older grids, had none), with its evidence."""
    top = max(r["psnr_t10"] for r in grid)
    best = min((r for r in grid if r["psnr_t10"] >= top - tolerance),
               key=lambda r: (r["sample_steps"], r["temperature"], -r["psnr_t10"]))
    return {"sample_steps": best["sample_steps"], "temperature": best["temperature"],
            "keep_bias": best.get("keep_bias", 0.0),
            "chosen_on": {"data": data, "criterion": f"fewest steps within {tolerance:g} dB of the highest psnr_t10, "
                                                     "then the lowest temperature, then the highest psnr_t10",
                          "grid": grid}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", default="1,2,4,8")
    parser.add_argument("--temperatures", default="0,0.5,1")
    parser.add_argument("--keep-biases", default="0", help="keep log-probability biases (copy_path worlds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.5, help="dB of psnr_t10 given up for fewer steps")
    parser.add_argument("--reuse-grid", action="store_true", help="decide from the grid in world.json")
    args = parser.parse_args()
    path = args.world / WORLD_FILE
    spec = json.loads(path.read_text())
    if args.reuse_grid:
        chosen_on = spec.get("sampling", {}).get("chosen_on", {})
        if "grid" not in chosen_on or chosen_on.get("data") != str(args.data):
            raise SystemExit(f"{path}: no grid evaluated on {args.data} to reuse; run without --reuse-grid")
        grid = chosen_on["grid"]
    else:
        grid = evaluate_grid(args.world, args.data, [int(v) for v in args.steps.split(",")],
                             [float(v) for v in args.temperatures.split(",")],
                             [float(v) for v in args.keep_biases.split(",")], args.seed)
    spec["sampling"] = choose(grid, str(args.data), args.tolerance)
    write_json_atomic(path, spec)
    print(f"{path}: sampling {spec['sampling']['sample_steps']} steps at temperature "
          f"{spec['sampling']['temperature']}, keep bias {spec['sampling']['keep_bias']}")


if __name__ == "__main__":
    main()
