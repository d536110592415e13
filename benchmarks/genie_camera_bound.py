"""How well could a world dream that tracked CoinRun's camera perfectly? (issue 3: ``psnr_t10``)

In CoinRun the camera follows the agent, so most of a clip's change is the whole view
translating. This script scores worlds that do nothing but translate the prompt, on the
evaluation's clips (one real prompt frame, PSNR of frame K, as ``nextworld eval``), each
through the world's own tokenizer as a real world's frames are:

- ``copy``: the prompt repeated (the eval's ``copy_psnr_tK``);
- ``tracked``: the prompt translated by the camera's true motion, summed: the integer shift of
  every real transition (``nextworld.data.camera.camera_shifts``), as a world that read the
  camera's motion off the clip exactly and moved its view by it would show;
- ``tracked_stepwise``: the same, but each frame is the previous *tokenized* frame translated
  and tokenized again, as a world that feeds back its own frames (the tokenizer's loss compounds);
- ``tracked_pixels``: the same moves, but each frame the previous one's pixels moved, not
  tokenized again (the border a move uncovers tokenized), as a world whose kept tokens show
  moved pixels (``GenieWorld.step``) shows them if it keeps every token;
- ``hindsight``: the translation of the prompt within 3 pixels of ``tracked``'s that best matches
  frame K itself, chosen knowing the answer: no world that only translates its prompt scores more;
- ``reconstruction``: the real frame K through the tokenizer, the ceiling of any world;
- with ``--lam DIR`` (a latent action model trained with ``motion_weight``), ``lam_named_stepwise``:
  as ``tracked_stepwise``, but each step moves by the shift that the LAM's motion head names for
  the action of the transition (``action_shifts``; a world trained since 2026-11-25 moves by
  the shifts measured on its training clips instead, ``world_named_pixels``); and ``lam_named_pixels``: the same moves shown as
  ``tracked_pixels`` shows the true ones;
- for a motion-compensated world (``DynamicsConfig.action_shifts``), ``world_named_pixels``: as
  ``tracked_pixels``, but each step moves by the shift the world's own latent action for the
  transition names (the shifts its training measured, ``modal_action_shifts``): the world itself,
  if its dynamics kept every token;
- with ``--shifts DY:DX,...``, ``snapped_stepwise``: as ``tracked_stepwise``, but each true step
  snapped to the nearest of those shifts: what a motion-compensated world whose latent actions
  name exactly these shifts gives if its LAM picked the right one at every step (the bound of a
  LAM with that many codes, if they named these moves); and ``snapped_pixels``, the same moves
  shown as ``tracked_pixels`` shows the true ones.

What translation cannot give (the agent's own motion, things entering the view, the
level's other sprites) is left to the dynamics; so if ``tracked`` falls short of a target, a world
must predict more than the camera to reach it.

    python benchmarks/genie_camera_bound.py [WORLD] --data DIR [--clips 64] [--lam DIR] [--shifts 0:0,4:0,-4:0,...] [--max-shift 4]

``--max-shift`` bounds the true move read per transition (4 by default, the bound earlier LAMs read;
the shipped LAM reads 8: CoinRun's camera moves up to about 7 pixels a frame in jumps and falls).

WORLD defaults to coinrun-tiny; ``--clips 64`` are the eval's own clips (evenly spaced). Prints one
JSON line and a table. About a second per 10 clips on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json

import torch

from nextworld.data.windows import open_clips
from nextworld.data.camera import MAX_SHIFT, camera_shifts, translate, translate_over
from nextworld.eval.evaluate import EVAL_WINDOW
from nextworld.eval.genie_eval import ROLLOUT_STEPS, _frames, copy_baseline, spaced_indices
from nextworld.eval.metrics import psnr
from nextworld.models.base import load_pretrained
from nextworld.models.genie.latent_actions import infer_actions_windowed
from nextworld.play.world import load_world_model

HINDSIGHT = 3
"""Pixels searched around the tracked shift, each axis, for the ``hindsight`` translation."""


def _tokenized(world, frames: torch.Tensor) -> torch.Tensor:
    """frames [B, T, C, H, W] through the world's tokenizer (encode, decode)."""
    return world.tokenizer.decode(world.tokenizer.encode(frames))


def _stepwise(world, x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Frames [B, T-1, C, H, W]: from the tokenized prompt, each the previous one moved by steps[:, k] and tokenized."""
    out, current = [], _tokenized(world, x[:, :1])[:, 0]
    for k in range(steps.shape[1]):
        current = _tokenized(world, translate(current, steps[:, k])[:, None])[:, 0]
        out.append(current)
    return torch.stack(out, dim=1)


def _kept_pixels(world, x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Frames [B, T-1, C, H, W] of a world that keeps every token and shows kept tokens as moved
    pixels (``GenieWorld.step``): from the tokenized prompt, each the previous one moved by
    steps[:, k], the border the move uncovers shown tokenized."""
    out, current = [], _tokenized(world, x[:, :1])[:, 0]
    for k in range(steps.shape[1]):
        tokenized = _tokenized(world, translate(current, steps[:, k])[:, None])[:, 0]
        current = translate_over(current, steps[:, k], tokenized)  # as GenieWorld.step shows kept tokens
        out.append(current)
    return torch.stack(out, dim=1)


@torch.no_grad()
def bound(world, x: torch.Tensor, lam=None, shifts: torch.Tensor | None = None,
          max_shift: int = MAX_SHIFT) -> dict[str, torch.Tensor]:
    """PSNR [B, T-1] of each translating world (module docstring) on clips x float [B, T, C, H, W];
    the true moves are read with shifts of up to ``max_shift`` pixels per transition."""
    b, t = x.shape[:2]
    real, prompt = x[:, 1:], x[:, 0]
    steps = camera_shifts(x, max_shift)  # (B, T-1, 2): transition k -> k+1
    total = steps.cumsum(dim=1)  # (B, T-1, 2): prompt -> frame k+1
    flat = prompt[:, None].expand(b, t - 1, *prompt.shape[1:]).reshape(-1, *prompt.shape[1:])
    tracked = translate(flat, total.reshape(-1, 2)).reshape(real.shape)
    best, best_psnr = tracked.clone(), torch.full(real.shape[:2], -1.0)
    for dy in range(-HINDSIGHT, HINDSIGHT + 1):
        for dx in range(-HINDSIGHT, HINDSIGHT + 1):
            shift = (total + torch.tensor([dy, dx])).reshape(-1, 2)
            candidate = translate(flat, shift).reshape(real.shape)
            score = psnr(candidate, real)
            better = score > best_psnr
            best[better], best_psnr[better] = candidate[better], score[better]
    rows = {"copy": copy_baseline(world, x),
            "tracked": psnr(_tokenized(world, tracked), real),
            "tracked_stepwise": psnr(_stepwise(world, x, steps), real),
            "tracked_pixels": psnr(_kept_pixels(world, x, steps), real),
            "hindsight": psnr(_tokenized(world, best), real),
            "reconstruction": psnr(_tokenized(world, real), real)}
    table = world.dynamics.config.shift_table(x.device)
    if table is not None:  # a motion-compensated world: the shifts its own actions name, as it plays them
        rows["world_named_pixels"] = psnr(_kept_pixels(world, x, table[infer_actions_windowed(world.lam, x)]), real)
    if lam is not None:
        named = lam.action_shifts().to(x.device)[infer_actions_windowed(lam, x)]  # (B, T-1, 2)
        rows["lam_named_stepwise"] = psnr(_stepwise(world, x, named), real)
        rows["lam_named_pixels"] = psnr(_kept_pixels(world, x, named), real)
    if shifts is not None:  # (K, 2)
        nearest = (steps[:, :, None].float() - shifts.float()).norm(dim=-1).argmin(dim=-1)  # (B, T-1)
        rows["snapped_stepwise"] = psnr(_stepwise(world, x, shifts[nearest]), real)
        rows["snapped_pixels"] = psnr(_kept_pixels(world, x, shifts[nearest]), real)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", nargs="?", default="coinrun-tiny")
    parser.add_argument("--data", required=True, help="held-out episodes")
    parser.add_argument("--clips", type=int, default=64, help="clips, evenly spaced (64: the eval's own)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lam", help="a latent action model trained with motion_weight (a run's lam directory)")
    parser.add_argument("--shifts", help="DY:DX,...: the moves a world's latent actions could name")
    parser.add_argument("--max-shift", type=int, default=MAX_SHIFT,
                        help="the largest true move read per transition, pixels per axis (camera_shifts)")
    args = parser.parse_args()
    if args.max_shift < 1:
        parser.error(f"--max-shift {args.max_shift}: expected at least 1")
    try:
        shifts = torch.tensor([[int(v) for v in s.split(":")] for s in args.shifts.split(",")]) if args.shifts else None
    except ValueError:
        parser.error(f"--shifts {args.shifts!r}: expected DY:DX pairs separated by commas")
    if shifts is not None and (shifts.dim() != 2 or shifts.shape[1] != 2):
        parser.error(f"--shifts {args.shifts!r}: expected DY:DX pairs separated by commas")
    world = load_world_model(args.world)
    if 2 * (args.max_shift + 4) >= min(world.frame_shape[:2]):
        parser.error(f"--max-shift {args.max_shift}: too large for {world.frame_shape[0]}-pixel frames")
    lam = load_pretrained(args.lam, "genie-lam").eval() if args.lam else None
    if lam is not None and lam.action_shifts() is None:
        parser.error(f"--lam {args.lam}: this latent action model names no shifts (trained without motion_weight)")
    clips = open_clips(args.data, EVAL_WINDOW, keys=("frames",), frame_shape=world.frame_shape)
    indices = spaced_indices(len(clips), args.clips)
    rows: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(indices), args.batch_size):
        x = _frames(clips, indices[start:start + args.batch_size], world.device)
        for name, values in bound(world, x, lam, shifts, args.max_shift).items():
            rows.setdefault(name, []).append(values.cpu())
    means = {name: torch.cat(values).mean(dim=0) for name, values in rows.items()}  # [T-1] each
    report = {"world": args.world, "data": args.data, "clips": len(indices), "max_shift": args.max_shift,
              **{name: {f"t{k}": round(float(m[k - 1]), 2) for k in ROLLOUT_STEPS} for name, m in means.items()}}
    print(json.dumps(report))
    print(f"{'':18s}" + "".join(f"{f't{k}':>8s}" for k in ROLLOUT_STEPS))
    for name, m in means.items():
        print(f"{name:18s}" + "".join(f"{float(m[k - 1]):8.2f}" for k in ROLLOUT_STEPS))


if __name__ == "__main__":
    main()
