"""Does a latent action model tell CoinRun's actions apart? NMI and the code-by-action table (issue 3: ``action_nmi``).

Trains the ``tiny`` latent action model alone on ``--data`` for ``--steps`` (optionally with
``LatentActionConfig.pixel_differences``, or with a shorter context ``--max-frames``: 2 leaves the
decoder frame t alone, so motion the past would predict has to pass through the action; or with
``--motion-weight``, so each code must also name the camera's shift), or reads an already trained one (``--lam DIR``),
and tabulates its latent actions on the 11-frame clips of ``--eval-data`` against the
recorded actions: NMI with the raw action (what ``action_nmi`` measures) and with the action
merged into the six classes CoinRun tells apart (left, left+jump, nothing, jump, right,
right+jump), the table of codes by class, which shows what the codes split on, and each code's
mean true camera shift (``data.camera.camera_shifts``; content moves right, +dx, when the agent
walks left), beside the shift its motion head names (the most likely one, an integer).

    python benchmarks/lam_action_readout.py --data TRAIN --eval-data HELDOUT --out OUT [--steps 1000] [--pixel-differences] [--max-frames 2] [--motion-weight 0.02] [--motion-max-shift 8]
    python benchmarks/lam_action_readout.py --lam RUN/lam --eval-data HELDOUT

Training 1,000 steps takes about 4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from action_visibility import EFFECTIVE_COINRUN  # a sibling script: benchmarks/ is on sys.path when run
from nextworld.data.frames import to_model_frames
from nextworld.data.windows import WindowSpec, open_clips
from nextworld.data.camera import camera_shifts
from nextworld.eval.genie_eval import CLIP_LENGTH, spaced_indices
from nextworld.eval.metrics import normalised_mutual_information as nmi
from nextworld.models.base import load_pretrained
from nextworld.models.genie import presets
from nextworld.models.genie.latent_actions import infer_actions_windowed
from nextworld.models.genie.training import GenieTrainConfig, train_genie

# Procgen's 15 actions -> CoinRun's six classes: LEFT(+DOWN), LEFT+UP, nothing (NOOP, DOWN and the
# six keys CoinRun ignores), UP, RIGHT(+DOWN), RIGHT+UP
CLASSES = ("left", "left+up", "nothing", "up", "right", "right+up")
COINRUN_CLASS = EFFECTIVE_COINRUN


@torch.no_grad()
def readout(lam: torch.nn.Module, eval_data: Path, max_clips: int) -> dict:
    clips = open_clips(eval_data, WindowSpec(length=CLIP_LENGTH, stride=CLIP_LENGTH))
    latent, real, moves = [], [], []
    indices = spaced_indices(len(clips), max_clips)
    for start in range(0, len(indices), 32):
        items = [clips[int(i)] for i in indices[start:start + 32]]
        frames = to_model_frames(torch.stack([item["frames"] for item in items]))  # (B, T, C, H, W)
        latent.append(infer_actions_windowed(lam, frames).flatten())
        real.append(torch.stack([item["actions"][:-1] for item in items]).flatten())
        moves.append(camera_shifts(frames, lam.config.motion_max_shift).reshape(-1, 2).double())  # the camera's true shift, read off the pixels
    z, a, shift = torch.cat(latent).numpy(), torch.cat(real).numpy(), torch.cat(moves).numpy()
    table = np.zeros((lam.num_actions, len(CLASSES)), np.int64)
    np.add.at(table, (z, COINRUN_CLASS[a]), 1)
    mean_shift = [shift[z == code].mean(axis=0).round(2).tolist() if (z == code).any() else None
                  for code in range(lam.num_actions)]
    return {"eval_data": str(eval_data), "transitions": int(len(z)), "nmi": nmi(z, a),
            "nmi_six_classes": nmi(z, COINRUN_CLASS[a]), "classes": list(CLASSES), "codes_by_class": table.tolist(),
            "mean_true_shift": mean_shift}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-data", type=Path, required=True, help="episodes with recorded CoinRun actions")
    parser.add_argument("--lam", type=Path, help="a trained latent action model (a run's lam directory)")
    parser.add_argument("--data", type=Path, help="training episodes (without --lam)")
    parser.add_argument("--out", type=Path, help="run directory to train into (without --lam)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--pixel-differences", action="store_true")
    parser.add_argument("--max-frames", type=int, help="the LAM's clip length (the tiny preset's when unset)")
    parser.add_argument("--motion-weight", type=float, default=0.0,
                        help="LatentActionConfig.motion_weight: the codes must also name the camera's shift")
    parser.add_argument("--motion-max-shift", type=int,
                        help="LatentActionConfig.motion_max_shift (the tiny preset's when unset)")
    parser.add_argument("--max-clips", type=int, default=1024)
    args = parser.parse_args()
    if args.lam is not None and (args.max_frames is not None or args.pixel_differences or args.data is not None
                                 or args.motion_weight or args.motion_max_shift is not None):
        parser.error("--lam reads a trained model; --data, --max-frames, --pixel-differences, --motion-weight "
                     "and --motion-max-shift "
                     "are for training one")
    if args.max_frames is not None and args.max_frames < 2:
        parser.error("--max-frames must be at least 2 (one transition)")
    if args.lam is None:
        if args.data is None or args.out is None:
            parser.error("give --lam, or --data and --out to train one")
        tiny = presets.LAM_PRESETS["tiny"]
        presets.LAM_PRESETS["tiny"] = dataclasses.replace(tiny, pixel_differences=args.pixel_differences,
                                                          max_frames=args.max_frames or tiny.max_frames,
                                                          motion_weight=args.motion_weight,
                                                          motion_max_shift=args.motion_max_shift or tiny.motion_max_shift)
        train_genie(GenieTrainConfig(data=args.data, out=args.out, stage="lam", steps=args.steps, progress=False))
        args.lam = args.out / "lam"
    lam = load_pretrained(args.lam, "genie-lam").eval()
    result = readout(lam, args.eval_data, args.max_clips)
    if (shifts := lam.action_shifts()) is not None:
        result["action_shifts"] = shifts.tolist()
    print(json.dumps({"lam": str(args.lam), **result}))
    print(f"NMI with the action {result['nmi']:.3f}, with its six classes {result['nmi_six_classes']:.3f} "
          f"({result['transitions']} transitions)")
    print("code  " + " ".join(f"{c:>9s}" for c in CLASSES) + "   mean true shift (dy, dx)")
    for code, row in enumerate(result["codes_by_class"]):
        mean = result["mean_true_shift"][code]
        print(f"{code:4d}  " + " ".join(f"{v:9d}" for v in row)
              + (f"   ({mean[0]:+.2f}, {mean[1]:+.2f})" if mean is not None else "   (unused)")
              + (f"   names the shift {tuple(result['action_shifts'][code])}" if "action_shifts" in result else ""))


if __name__ == "__main__":
    main()
