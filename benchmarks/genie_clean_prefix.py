"""Ablation: Genie's dynamics trained with a clean prefix of frames, against Genie's own masking.

    python benchmarks/genie_clean_prefix.py RUN --data TRAIN --out OUT --prob 1.0 [--steps 1500]

Trains only the dynamics stage of the ``tiny`` preset into ``OUT`` on ``RUN``'s trained
tokenizer and latent action model (linked, not copied), with
``DynamicsConfig.clean_prefix_prob`` set to ``--prob`` (0 is Genie's scheme: every frame but
the first hides 50-100% of its tokens). Evaluate each ``OUT`` with ``nextworld eval OUT --data
VALIDATION --sample-steps 2 --temperature 0 --max-clips 256`` and compare ``psnr_tK``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nextworld.models.genie import presets
from nextworld.models.genie.training import GenieTrainConfig, train_genie


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prob", type=float, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    presets.DYNAMICS_SHAPES["tiny"] = dict(presets.DYNAMICS_SHAPES["tiny"], clean_prefix_prob=args.prob)
    args.out.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", "lam"):
        if not (args.out / stage).exists():
            os.symlink((args.run / stage).resolve(), args.out / stage)
    train_genie(GenieTrainConfig(data=args.data, out=args.out, stage="dynamics", steps=args.steps))


if __name__ == "__main__":
    main()
