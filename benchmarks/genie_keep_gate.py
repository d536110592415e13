"""Would a sampler that keeps a code unless the dynamics is sure of another beat the copy? (issue 3: ``psnr_t10``)

The shipped world dreams slightly below the copy baseline (its prompt, repeated): on still
clips it replaces codes that should stay. This tries, without retraining, a gate on 1-step
greedy MaskGIT: each token of a new frame takes the dynamics' most likely code only where that
code's probability is at least ``tau``, and keeps the previous frame's code elsewhere. ``tau``
0 is the world as shipped; ``tau`` above 1 is the copy. For each ``--taus`` value it prints the
eval's ``psnr_tK``, ``copy_psnr_tK`` and ``delta_psnr_t4`` on a validation split; choose on
validation, never on the held-out levels.

    python benchmarks/genie_keep_gate.py coinrun-tiny --data VAL [--taus 0,0.3,0.5,0.7,0.9] [--max-clips 256]
"""

from __future__ import annotations

import argparse
import json
import types

import torch
from rich.progress import Progress

from nextworld.data.windows import WindowSpec, open_clips
from nextworld.eval.genie_eval import CLIP_LENGTH, rollout_metrics, spaced_indices
from nextworld.models.genie.dynamics import GenieDynamics
from nextworld.play.world import World


def gated_generate_next(tau: float):
    """``GenieDynamics.generate_next`` for 1 greedy step, with the keep gate at ``tau``."""

    @torch.no_grad()
    def generate_next(self: GenieDynamics, cache, action, steps=1, temperature=0.0, generator=None, previous=None,
                      keep_bias=0.0):
        if steps != 1 or temperature != 0 or previous is None or self.config.copy_path:
            raise ValueError("the keep gate is defined for 1 greedy step, with the previous frame, without copy_path")
        b, grid = action.shape[0], self.config.token_grid
        a = self.action_embedding(action)[:, None, None]  # (B, 1, 1, D)
        hidden = torch.full((b, 1, *grid), self.mask_id, dtype=torch.long, device=action.device)
        out = self.transformer(self._embed_tokens(hidden) + a, cache=cache, update_cache=False)[:, 0]  # (B, P, D)
        probs = self._ungroup(self.head(out)).softmax(dim=-1)  # (B, h, w, V)
        confidence, best = probs.max(dim=-1)  # (B, h, w)
        frame = torch.where(confidence >= tau, best, previous)
        self.transformer(self._embed_tokens(frame[:, None]) + a, cache=cache, update_cache=True)
        return frame

    return generate_next


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", help="a Genie world: a name in the zoo or a run directory")
    parser.add_argument("--data", required=True, help="validation episodes")
    parser.add_argument("--taus", default="0,0.3,0.5,0.7,0.9")
    parser.add_argument("--max-clips", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = World.from_pretrained(args.world).model
    world.set_sampling(1, 0.0)
    clips = open_clips(args.data, WindowSpec(length=CLIP_LENGTH, stride=CLIP_LENGTH))
    indices = spaced_indices(len(clips), args.max_clips)
    for tau in (float(t) for t in args.taus.split(",")):
        world.dynamics.generate_next = types.MethodType(gated_generate_next(tau), world.dynamics)
        with Progress(transient=True) as bar:
            metrics, _ = rollout_metrics(world, clips, indices, batch_size=16, seed=args.seed, progress=bar)
        print(json.dumps({"tau": tau, **{k: round(v, 3) for k, v in metrics.items()}}))


if __name__ == "__main__":
    main()
