"""How much a motion-compensated world loses by not trusting its moved frame (a probe, not a feature).

A ``copy_path`` dynamics gives each token a "keep" probability that goes to the code of the last
frame moved by its action's shift (docs/genie.md, "The three stages"). This probe adds ``BIAS``
to that keep log-probability at sampling time only (training is untouched) and runs
``nextworld eval``'s metrics for each bias. Bias 0 is the world as shipped; a large bias makes the
world close to a pure translation by the shifts its actions name (``genie_camera_bound.py
--lam``'s LAM-named row). The library has no such sampling option: this script patches
``GenieDynamics._keep_previous`` in its own process.

    python benchmarks/genie_keep_bias.py [WORLD] --data DIR [--biases 0,1,2,4,8] [--steps 1] [--temperature 0]

Prints one JSON line per bias. About 10 s per bias on 2 CPU cores (64 clips).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from nextworld.eval.evaluate import EvalConfig, evaluate
from nextworld.models.genie import dynamics as genie_dynamics

KEYS = ("psnr_t1", "psnr_t4", "psnr_t10", "delta_psnr_t4", "copy_psnr_t10")
_shipped_keep = genie_dynamics.GenieDynamics._keep_previous


def keep_with_bias(bias: float):
    """``_keep_previous`` with ``bias`` added to the raw "keep" logit outside training. After the
    library's softmax this equals adding it to the keep log-probability, up to one constant per
    token, so greedy picks and sampling probabilities are those of the biased keep."""

    def keep(self, x: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        if not self.training and self.config.copy_path:
            x = torch.cat([x[..., :-1], x[..., -1:] + bias], dim=-1)
        return _shipped_keep(self, x, previous)

    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", nargs="?", default="coinrun-tiny", help="a zoo name or a run directory")
    parser.add_argument("--data", type=Path, required=True, help="episode dataset to evaluate on")
    parser.add_argument("--biases", default="0,1,2,4,8", help="comma-separated keep log-probability biases")
    parser.add_argument("--steps", type=int, default=None, help="MaskGIT steps (the world's own when unset)")
    parser.add_argument("--temperature", type=float, default=None, help="temperature (the world's own when unset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        biases = [float(v) for v in args.biases.split(",")]
    except ValueError:
        raise SystemExit(f"--biases {args.biases!r}: expected comma-separated numbers") from None
    for bias in biases:
        genie_dynamics.GenieDynamics._keep_previous = keep_with_bias(bias)
        metrics = evaluate(EvalConfig(run=Path(args.world), data=args.data, sample_steps=args.steps,
                                      temperature=args.temperature, action_clips=64, fps_steps=8,
                                      seed=args.seed, progress=False))
        print(json.dumps({"world": args.world, "data": str(args.data), "keep_bias": bias,
                          **{k: round(metrics[k], 3) for k in KEYS}}), flush=True)
    genie_dynamics.GenieDynamics._keep_previous = _shipped_keep


if __name__ == "__main__":
    main()
