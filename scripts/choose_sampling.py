"""Choose a Genie world's default sampling (MaskGIT steps, temperature) on a validation split.

    python scripts/choose_sampling.py WORLD_DIR --data VALIDATION [--steps 1,2,4,8] [--temperatures 0,0.5,1]

Evaluates every combination on ``VALIDATION`` (episodes of *training* levels that training
did not use; never the held-out levels the targets are reported on), picks the one with the
highest ``psnr_t10`` (ties: fewer steps, the faster one), and writes it as the world's
``sampling`` in ``WORLD_DIR/world.json`` together with the whole grid, so the choice and its
evidence travel with the world.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nextworld.atomic_files import write_json_atomic
from nextworld.eval.evaluate import EvalConfig, evaluate
from nextworld.models.genie.world import WORLD_FILE

KEYS = ("psnr_t1", "psnr_t4", "psnr_t10", "delta_psnr_t4")


def choose(world: Path, data: Path, steps: list[int], temperatures: list[float], seed: int) -> dict:
    grid = []
    for s in steps:
        for t in temperatures:
            metrics = evaluate(EvalConfig(run=world, data=data, sample_steps=s, temperature=t, action_clips=64,
                                          fps_steps=8, seed=seed, progress=False))
            row = {"sample_steps": s, "temperature": t, **{k: round(metrics[k], 4) for k in KEYS}}
            print(json.dumps(row), flush=True)
            grid.append(row)
    best = max(grid, key=lambda r: (r["psnr_t10"], -r["sample_steps"]))
    return {"sample_steps": best["sample_steps"], "temperature": best["temperature"],
            "chosen_on": {"data": str(data), "criterion": "highest psnr_t10, then fewer steps", "grid": grid}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", default="1,2,4,8")
    parser.add_argument("--temperatures", default="0,0.5,1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = args.world / WORLD_FILE
    spec = json.loads(path.read_text())
    spec["sampling"] = choose(args.world, args.data, [int(v) for v in args.steps.split(",")],
                              [float(v) for v in args.temperatures.split(",")], args.seed)
    write_json_atomic(path, spec)
    print(f"{path}: sampling {spec['sampling']['sample_steps']} steps at temperature "
          f"{spec['sampling']['temperature']}")


if __name__ == "__main__":
    main()
