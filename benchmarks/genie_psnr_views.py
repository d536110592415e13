"""Three views of a Genie world's rollout PSNR, so a change to the world is not judged by one average.

``nextworld eval``'s ``psnr_tK`` is DESIGN.md's definition: PSNR of each clip's frame K, then the
mean over clips. A mean of per-frame PSNRs weighs a gain on an easy clip (a still camera, 30 dB)
as much as one on a hard clip, and a frame copied exactly scores ``eval.metrics.MIN_MSE``'s cap
(100 dB), so a world that put exact pixels on screen could lift the mean a lot while its
errors, pooled, grew. This script dreams the eval's own clips (evenly spaced, one prompt frame,
the latent actions the LAM infers from the real clip, sampling seeded as the eval seeds it) and
prints, for K = 1, 4, 10:

- ``mean``: the mean of per-frame PSNRs (the eval's ``psnr_tK``);
- ``pooled``: the PSNR of the mean squared error over the clips (no frame weighs more than its error);
- ``median``: the median per-frame PSNR;
- ``exact``: the share of frames identical to the real one (each scored at the cap);

and, for a world whose dynamics has a copy path, the share of the tokens it generated that are
the ones it could keep (``kept_tokens``; a code sampled anew that happens to equal the kept one
counts as kept, as ``GenieWorld.step`` shows it so).

    python benchmarks/genie_psnr_views.py [WORLD] --data DIR [--clips 64] [--keep-bias B]

WORLD defaults to coinrun-tiny. Prints one JSON line and a table; about 10 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json

import torch

from nextworld.data.windows import open_clips
from nextworld.eval.evaluate import EVAL_WINDOW
from nextworld.eval.genie_eval import ROLLOUT_STEPS, _frames, spaced_indices
from nextworld.eval.metrics import MIN_MSE
from nextworld.play.world import load_world_model


@torch.no_grad()
def rollout_errors(world, clips, indices, batch_size: int, seed: int) -> tuple[torch.Tensor, float | None]:
    """Mean squared error [N, T-1] of each clip's dreamed frames 1..T-1 (float64), and, for a
    world whose dynamics has a copy path, the share of generated tokens equal to the ones it
    could keep (None otherwise)."""
    generator = torch.Generator(device=world.device).manual_seed(seed)
    errors, kept = [], []
    generate_next = world.dynamics.generate_next

    def counting(*args, **kwargs):  # the world's own sampler, with its kept tokens counted
        new = generate_next(*args, **kwargs)
        kept.append((new == kwargs["previous"]).double().mean().item())
        return new

    if world.dynamics.config.copy_path:
        world.dynamics.generate_next = counting
    try:
        for start in range(0, len(indices), batch_size):
            x = _frames(clips, indices[start:start + batch_size], world.device)  # (B, T, C, H, W)
            dreamed = world.rollout(x[:, :1], world.infer_actions(x), generator)  # (B, T-1, C, H, W)
            errors.append((dreamed.double() - x[:, 1:].double()).square().mean(dim=(-3, -2, -1)).cpu())
    finally:
        world.dynamics.generate_next = generate_next
    return torch.cat(errors), (sum(kept) / len(kept) if kept else None)


def views(mse: torch.Tensor) -> dict[str, float]:
    """The four views of one step's errors mse [N]."""
    per_frame = -10 * torch.log10(mse.clamp_min(MIN_MSE))
    return {"mean": round(float(per_frame.mean()), 2), "pooled": round(float(-10 * torch.log10(mse.mean())), 2),
            "median": round(float(per_frame.median()), 2), "exact": round(float((mse < MIN_MSE).double().mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", nargs="?", default="coinrun-tiny")
    parser.add_argument("--data", required=True, help="held-out episodes")
    parser.add_argument("--clips", type=int, default=64, help="clips, evenly spaced (64: the eval's own)")
    parser.add_argument("--batch-size", type=int, default=16, help="the eval's batch (its sampling stream depends on it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-bias", type=float, help="instead of the world's own (a copy-path world)")
    args = parser.parse_args()
    if args.clips < 1 or args.batch_size < 1:
        parser.error("--clips and --batch-size must be at least 1")
    world = load_world_model(args.world)
    if args.keep_bias is not None:
        world.set_sampling(keep_bias=args.keep_bias)
    clips = open_clips(args.data, EVAL_WINDOW, keys=("frames",), frame_shape=world.frame_shape, verify="lazy")
    mse, kept = rollout_errors(world, clips, spaced_indices(len(clips), args.clips), args.batch_size, args.seed)
    report = {f"t{k}": views(mse[:, k - 1]) for k in ROLLOUT_STEPS}
    print(json.dumps({"world": args.world, "data": args.data, "clips": mse.shape[0], "kept_tokens": kept, **report}))
    if kept is not None:
        print(f"tokens kept by the dynamics' copy path (batches averaged): {kept:.1%}")
    print(f"{'':6s}" + "".join(f"{name:>9s}" for name in ("mean", "pooled", "median", "exact")))
    for k, row in report.items():
        print(f"{k:6s}" + "".join(f"{row[name]:9.2f}" if name != "exact" else f"{row[name]:9.3f}" for name in row))


if __name__ == "__main__":
    main()
