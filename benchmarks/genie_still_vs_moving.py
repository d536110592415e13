"""Where a Genie world's rollouts lose PSNR: clips whose view stays still against clips that move.

    python benchmarks/genie_still_vs_moving.py WORLD --data DIR [--clips 256] [--sample-steps 2] [--temperature 0]

Takes the evaluation's 11-frame clips (``nextworld eval``'s windows, evenly spaced), dreams each
from its first frame under the latent actions the world reads off it, and splits the clips by
whether every real frame 1..10 still equals frame 0 (pixel PSNR above 45 dB each: the view did
not move). For each group it prints the world's PSNR at t = 1, 4, 10 next to the copy
baseline's (the tokenized prompt repeated, ``copy_psnr_tK`` of the eval): a world should match
the copy on still clips and beat it on moving ones. It also prints the share of token codes
that consecutive real frames share (``codes_kept``): what a dynamics model may simply keep.
Use a validation split, not the held-out levels, when tuning.
"""

from __future__ import annotations

import argparse
import json

import torch

from nextworld.data.windows import open_clips
from nextworld.eval.evaluate import EVAL_WINDOW
from nextworld.eval.genie_eval import ROLLOUT_STEPS, _frames, copy_baseline, spaced_indices
from nextworld.eval.metrics import psnr
from nextworld.play.world import load_world_model

STILL_DB = 45.0
"""Every real frame 1..10 against frame 0 above this PSNR: the clip counts as still."""


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world")
    parser.add_argument("--data", required=True)
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample-steps", type=int, default=None, help="the world's own when unset")
    parser.add_argument("--temperature", type=float, default=None, help="the world's own when unset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = load_world_model(args.world)
    world.set_sampling(args.sample_steps, args.temperature)
    clips = open_clips(args.data, EVAL_WINDOW, keys=("frames",), frame_shape=world.frame_shape)
    indices = spaced_indices(len(clips), args.clips)
    generator = torch.Generator().manual_seed(args.seed)
    dreamed, copied, still, kept = [], [], [], []
    for start in range(0, len(indices), args.batch_size):
        x = _frames(clips, indices[start:start + args.batch_size], world.device)  # (B, T, C, H, W)
        real = x[:, 1:]
        dreamed.append(psnr(world.rollout(x[:, :1], world.infer_actions(x), generator), real))
        codes = world.tokenizer.encode(x)  # (B, T, h, w)
        kept.append((codes[:, 1:] == codes[:, :-1]).float().flatten(1).mean(1))
        copied.append(copy_baseline(world, x))
        still.append((psnr(x[:, :1].expand_as(real), real) > STILL_DB).all(dim=1))
    dreamed_t, copied_t, still_t = torch.cat(dreamed), torch.cat(copied), torch.cat(still)
    report = {"world": args.world, "data": args.data, "clips": len(indices), "still_clips": int(still_t.sum()),
              "codes_kept": round(float(torch.cat(kept).mean()), 3),
              "sample_steps": world.sample_steps, "temperature": world.temperature}
    for name, rows in (("still", still_t), ("moving", ~still_t), ("all", torch.ones_like(still_t))):
        for label, values in (("world", dreamed_t), ("copy", copied_t)):
            report[f"{name}_{label}"] = {f"t{k}": round(float(values[rows][:, k - 1].mean()), 2)
                                         for k in ROLLOUT_STEPS} if rows.any() else None
    print(json.dumps(report))
    for name in ("still", "moving", "all"):
        print(f"{name:7s} world {report[name + '_world']}  copy {report[name + '_copy']}")


if __name__ == "__main__":
    main()
