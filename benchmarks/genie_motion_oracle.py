"""Would the dreams follow the camera if the latent actions named its motion exactly? (issue 3: ``psnr_t10``)

The shipped tiny world dreams no better than repeating its prompt (``copy_psnr_tK``), and its
latent actions carry little of CoinRun's motion (``action_nmi``). This separates the causes.
It trains the ``tiny`` dynamics stage on ``RUN``'s tokenizer, conditioned on an oracle in
place of the latent action model, read off the pixels of each transition t -> t+1 with
``nextworld.data.camera.camera_shifts`` (the shift that best aligns the frames' centres,
within 4 pixels). Then it evaluates that world on a validation split with the oracle reading
the real clips, as the eval's LAM does.

- Default: the action is the *sign* of the camera's shift (dy, dx): 9 actions, and a plain
  Genie dynamics that must learn what a move does to the codes.
- ``--compensate``: the action is the shift itself (81 actions), and the oracle names each
  action's shift, so the dynamics is motion-compensated (``DynamicsConfig.action_shifts``:
  ``copy_path`` on, frame t+1 keeping codes of frame t moved by the shift), in training and
  in the world's rollout alike. Compare it with ``tracked_stepwise`` of
  ``benchmarks/genie_camera_bound.py``: does the dynamics add anything to the translation?

If the oracle world beats ``copy_psnr_tK`` clearly, the dynamics can move the scene when
told how, and the latent action model is what holds the dreams back; if it stays at the
copy, the dynamics (or the tokens it predicts) is.

    python benchmarks/genie_motion_oracle.py RUN --data TRAIN --eval-data VAL --out OUT [--steps 1500] [--compensate]

Prints the eval's JSON (``psnr_tK``, ``copy_psnr_tK``, ``delta_psnr_t4``, under which random
oracle actions move the view the wrong way; ``action_nmi`` is then the oracle's own NMI with the
recorded actions). Training ``--steps 1500`` takes 10-15 minutes on 2 CPU cores; the eval of
256 clips a few more. A run cut short (Ctrl-C) exits 130 and resumes when run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from nextworld.data.windows import WindowSpec, open_clips
from nextworld.data.camera import camera_shifts
from nextworld.eval.genie_eval import CLIP_LENGTH, evaluate_genie
from nextworld.models.base import load_pretrained
from nextworld.models.genie import training
from nextworld.models.genie.latent_actions import SHIFT_CLASSES, LatentActionConfig, class_of_shift, shift_of_class
from nextworld.models.genie.presets import LAM_PRESETS
from nextworld.models.genie.training import GenieTrainConfig, train_genie
from nextworld.models.genie.world import WORLD_FILE, GenieWorld

ORACLE_DONE = "oracle_dynamics_done"
"""Marks a finished oracle dynamics in OUT (its world.json is removed: the linked LAM does not fit it)."""


class MotionOracle(nn.Module):
    """Stands in for the latent action model. Plain: action = 3 * (sign dy + 1) + (sign dx + 1),
    9 actions. Compensated: action = the shift's class (``class_of_shift``), 81 actions, each
    naming its own shift."""

    def __init__(self, config: LatentActionConfig, compensate: bool) -> None:
        super().__init__()
        self.compensate = compensate
        self.num_actions = SHIFT_CLASSES if compensate else 9
        self.config = dataclasses.replace(config, num_actions=self.num_actions)
        self.register_buffer("_device", torch.zeros(0))

    @torch.no_grad()
    def infer_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, C, H, W] -> int64 [B, T-1]: the camera's shift between frames t and t+1, as an action."""
        shifts = camera_shifts(frames)  # (B, T-1, 2)
        if self.compensate:
            return class_of_shift(shifts)
        signs = shifts.sign() + 1  # (B, T-1, 2) in {0, 1, 2}
        return (3 * signs[..., 0] + signs[..., 1]).long()

    def action_shifts(self) -> torch.Tensor | None:
        """The shift each action names (compensated), as ``LatentActionModel.action_shifts``."""
        return shift_of_class(torch.arange(self.num_actions)) if self.compensate else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a Genie run with a trained tokenizer stage")
    parser.add_argument("--data", type=Path, required=True, help="training episodes")
    parser.add_argument("--eval-data", type=Path, required=True, help="validation episodes (with recorded actions)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--compensate", action="store_true",
                        help="81 shift actions and a motion-compensated dynamics (module docstring)")
    parser.add_argument("--max-clips", type=int, default=256)
    parser.add_argument("--sample-steps", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()
    oracle = MotionOracle(LAM_PRESETS["tiny"], args.compensate)
    load_stage = training._load_stage
    training._load_stage = lambda out, stage: oracle if stage == "lam" else load_stage(out, stage)
    args.out.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", "lam"):  # the lam's weights are only hashed into the dynamics' config
        if not (args.out / stage).exists():
            os.symlink((args.run / stage).resolve(), args.out / stage)
    done = args.out / ORACLE_DONE
    if not done.is_file():  # a run cut short (Ctrl-C) resumes from the dynamics' last checkpoint
        results = train_genie(GenieTrainConfig(data=args.data, out=args.out, stage="dynamics", steps=args.steps,
                                               resume=(args.out / "dynamics").exists()))
        # world.json would pair the linked 8-action LAM with this oracle's dynamics: not a world to load
        (args.out / WORLD_FILE).unlink(missing_ok=True)
        if results["dynamics"].interrupted:
            raise SystemExit(130)
        done.write_text(f"the dynamics here was trained on the motion oracle's actions (compensate={args.compensate})\n")
    world = GenieWorld(load_pretrained(args.out / "tokenizer", "genie-tokenizer"), oracle,
                       load_pretrained(args.out / "dynamics", "genie-dynamics"))
    world.set_sampling(args.sample_steps, args.temperature)
    clips = open_clips(args.eval_data, WindowSpec(length=CLIP_LENGTH, stride=CLIP_LENGTH))
    try:
        result = evaluate_genie(world, clips, max_clips=args.max_clips, progress=True)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    print(json.dumps(result.metrics))


if __name__ == "__main__":
    main()
