"""Ablations of Genie's dynamics: a clean prefix of frames in training, a path to keep codes.

    python benchmarks/genie_dynamics_ablation.py RUN --data TRAIN --out OUT [--prob 1.0] [--copy-path] [--steps 1500]
        [--dim 256 --depth 6 --heads 8]

Trains only the dynamics stage of the ``tiny`` preset into ``OUT`` on ``RUN``'s trained
tokenizer and latent action model (linked, not copied), with
``DynamicsConfig.clean_prefix_prob`` set to ``--prob`` (0, the default, is Genie's scheme:
every frame but the first hides 50-100% of its tokens) and ``copy_path`` on with
``--copy-path``; ``--dim``, ``--depth`` and ``--heads`` change the transformer's size (the tiny
preset's 128, 4, 4 when unset; the small preset's are 256, 6, 8). Evaluate each ``OUT`` with ``nextworld eval OUT --data VALIDATION
--sample-steps 2 --temperature 0 --max-clips 256`` and compare ``psnr_tK`` (and ``copy_psnr_tK``,
``delta_psnr_t4``).
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
    parser.add_argument("--prob", type=float, default=0.0, help="clean_prefix_prob")
    parser.add_argument("--copy-path", action="store_true", help="copy_path")
    parser.add_argument("--steps", type=int, default=1500)
    for name in ("dim", "depth", "heads"):
        parser.add_argument(f"--{name}", type=int, help=f"the transformer's {name} (the tiny preset's when unset)")
    args = parser.parse_args()
    sizes = {name: getattr(args, name) for name in ("dim", "depth", "heads") if getattr(args, name) is not None}
    presets.DYNAMICS_SHAPES["tiny"] = dict(presets.DYNAMICS_SHAPES["tiny"], clean_prefix_prob=args.prob,
                                           copy_path=args.copy_path, **sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", "lam"):
        if not (args.out / stage).exists():
            os.symlink((args.run / stage).resolve(), args.out / stage)
    train_genie(GenieTrainConfig(data=args.data, out=args.out, stage="dynamics", steps=args.steps))


if __name__ == "__main__":
    main()
