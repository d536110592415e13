"""Does a dynamics told the camera's motion, keeping codes from the motion-compensated frame, beat pure translation? (issue 3)

A world that only translates its prompt by the camera's true motion, re-tokenizing each step
(``tracked_stepwise`` in ``benchmarks/genie_camera_bound.py``), scores psnr_t10 20.89 on 256
validation clips (copy: 18.29). This asks whether the dynamics adds anything on top of that
translation (the agent's own motion, new content at the edges) when it is given the
translation for free. It trains the ``tiny`` dynamics stage with ``copy_path`` on ``RUN``'s
tokenizer, with two oracles instead of the latent action model:

- the action of transition t -> t+1 is the camera's true shift (dy, dx) in [-4, 4]^2
  (``nextworld.eval.camera.camera_shifts`` on the real frames) as one of 81 classes,
  ``(dy + 4) * 9 + (dx + 4)``;
- the "keep" path of frame t+1 points at real frame t moved by that shift and tokenized
  (``translate``, ``tokenizer.encode``), not at frame t's own tokens (``batch["previous"]`` of
  ``GenieDynamics.loss``).

Evaluation rolls out from each clip's real frame 0 (clips of 11 frames, evenly spaced over
``--eval-data``, as ``nextworld eval``): at step k the keep target is the dynamics' own last
frame decoded, moved by the true shift k and tokenized again, and the action is shift k's
class; argmax MaskGIT with ``--sample-steps`` iterations. It reports PSNR at t1/t4/t10 next to
the copy baseline and ``tracked_stepwise`` on the same clips, and ``delta_psnr_t4``: t4 minus
the same rollout driven by uniformly random shifts (which set both action and translation).

    python benchmarks/genie_compensated_oracle.py RUN --data TRAIN --eval-data VAL --out OUT [--steps 1500]

Cost on 2 CPU cores: training about 0.4 s a step (``--steps 1500``: 10-15 minutes; a run cut
short with Ctrl-C exits 130 and resumes from OUT/dynamics' last checkpoint when run again), the
eval of 256 clips a minute or two. Prints one JSON line and a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from nextworld.data.frames import to_model_frames
from nextworld.data.windows import open_clips
from nextworld.eval.camera import MAX_SHIFT, camera_shifts, translate
from nextworld.eval.evaluate import EVAL_WINDOW
from nextworld.eval.genie_eval import DELTA_STEP, ROLLOUT_STEPS, _frames, spaced_indices
from nextworld.eval.metrics import psnr
from nextworld.models.base import load_pretrained
from nextworld.models.genie import presets, training
from nextworld.models.genie.dynamics import GenieDynamics
from nextworld.models.genie.latent_actions import LatentActionConfig
from nextworld.models.genie.presets import LAM_PRESETS
from nextworld.models.genie.tokenizer import VideoTokenizer
from nextworld.models.genie.training import GenieTrainConfig, train_genie
from nextworld.models.genie.world import WORLD_FILE

ORACLE_DONE = "compensated_dynamics_done"
"""Marks a finished dynamics in OUT (its world.json is removed: the linked LAM does not fit it)."""
SIDE = 2 * MAX_SHIFT + 1
"""Shifts per axis: 9, so 81 shift classes."""


def shift_class(shifts: torch.Tensor) -> torch.Tensor:
    """int [..., 2] (dy, dx) in [-4, 4]^2 -> int64 [...] in [0, 81)."""
    return ((shifts[..., 0] + MAX_SHIFT) * SIDE + shifts[..., 1] + MAX_SHIFT).long()


class ShiftOracle(nn.Module):
    """Stands in for the latent action model: action = the camera's true shift's class, 81 actions."""

    num_actions = SIDE**2

    def __init__(self, config: LatentActionConfig) -> None:
        super().__init__()
        self.config = dataclasses.replace(config, num_actions=self.num_actions)
        self.register_buffer("_device", torch.zeros(0))

    @torch.no_grad()
    def infer_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, C, H, W] -> int64 [B, T-1]: the class of the camera's shift from frame t to t+1."""
        return shift_class(camera_shifts(frames))


def moved(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """frames float [B, K, C, H, W] each translated by shifts int [B, K, 2]."""
    return translate(frames.flatten(0, 1), shifts.flatten(0, 1)).unflatten(0, frames.shape[:2])


class CompensatedInputs(training.DynamicsInputs):
    """The dynamics stage's batches plus ``previous``: frame t+1 keeps codes from real frame t moved
    by the camera's true shift t -> t+1 and tokenized; frame 0 from itself (unused by the loss)."""

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().__call__(batch)
        x = to_model_frames(batch["frames"])  # (B, T, C, H, W)
        previous = self.tokenizer.encode(moved(x[:, :-1], camera_shifts(x)))  # (B, T-1, h, w)
        out["previous"] = torch.cat([out["tokens"][:, :1], previous], dim=1)
        return out


@torch.no_grad()
def rollout(tokenizer: VideoTokenizer, dynamics: GenieDynamics, prompt: torch.Tensor, shifts: torch.Tensor,
            sample_steps: int) -> torch.Tensor:
    """Frames float [B, K, C, H, W] dreamed from prompt float [B, C, H, W] under shifts int64 [B, K, 2]:
    each step's action is the shift's class, its keep target the last frame moved by the shift."""
    tokens = tokenizer.encode(prompt[:, None])  # (B, 1, h, w): the context
    actions = tokens.new_zeros(tokens.shape[0], 0)  # (B, L-1): actions between context frames
    cache, out = dynamics.prefill(tokens, actions), []
    for k in range(shifts.shape[1]):
        if cache.length >= dynamics.config.max_frames:  # slide, as GenieWorld.step does
            tokens, actions = tokens[:, 1:], actions[:, 1:]
            cache = dynamics.prefill(tokens, actions)
        action = shift_class(shifts[:, k])
        previous = tokenizer.encode(moved(tokenizer.decode(tokens[:, -1:]), shifts[:, k:k + 1]))[:, 0]
        new = dynamics.generate_next(cache, action, steps=sample_steps, temperature=0.0, previous=previous)
        tokens, actions = torch.cat([tokens, new[:, None]], dim=1), torch.cat([actions, action[:, None]], dim=1)
        out.append(new)
    return tokenizer.decode(torch.stack(out, dim=1))


@torch.no_grad()
def evaluate(tokenizer: VideoTokenizer, dynamics: GenieDynamics, data: Path, max_clips: int, batch_size: int,
             sample_steps: int, seed: int) -> tuple[dict[str, torch.Tensor], int]:
    """Per-step mean PSNR [T-1] of the oracle world, the copy and tracked_stepwise, the random-shift t4
    (a scalar), and the number of clips."""
    clips = open_clips(data, EVAL_WINDOW, keys=("frames",), frame_shape=tokenizer.config.frame_shape)
    indices = spaced_indices(len(clips), max_clips)
    generator = torch.Generator().manual_seed(seed)
    rows: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(indices), batch_size):
        x = _frames(clips, indices[start:start + batch_size], torch.device("cpu"))  # (B, T, C, H, W)
        b, real = x.shape[0], x[:, 1:]
        shifts = camera_shifts(x)  # (B, T-1, 2)
        random_shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (b, DELTA_STEP, 2), generator=generator)
        still = tokenizer.decode(tokenizer.encode(x[:, :1]))  # (B, 1, C, H, W)
        stepwise, current = [], still
        for k in range(shifts.shape[1]):
            current = tokenizer.decode(tokenizer.encode(moved(current, shifts[:, k:k + 1])))
            stepwise.append(current[:, 0])
        scores = {"oracle": psnr(rollout(tokenizer, dynamics, x[:, 0], shifts, sample_steps), real),
                  "copy": psnr(still.expand_as(real), real),
                  "tracked_stepwise": psnr(torch.stack(stepwise, dim=1), real),
                  "random_t4": psnr(rollout(tokenizer, dynamics, x[:, 0], random_shifts, sample_steps)[:, -1],
                                    x[:, DELTA_STEP])}
        for name, values in scores.items():
            rows.setdefault(name, []).append(values)
        print(f"eval: {start + b}/{len(indices)} clips", flush=True)
    return {name: torch.cat(values).mean(dim=0) for name, values in rows.items()}, len(indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a Genie run with a trained tokenizer stage")
    parser.add_argument("--data", type=Path, required=True, help="training episodes")
    parser.add_argument("--eval-data", type=Path, required=True, help="validation episodes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--max-clips", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample-steps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random shifts of delta_psnr_t4")
    args = parser.parse_args()
    oracle = ShiftOracle(LAM_PRESETS["tiny"])
    load_stage = training._load_stage
    training._load_stage = lambda out, stage: oracle if stage == "lam" else load_stage(out, stage)
    training.DynamicsInputs = CompensatedInputs
    presets.DYNAMICS_SHAPES["tiny"] = dict(presets.DYNAMICS_SHAPES["tiny"], copy_path=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for stage in ("tokenizer", "lam"):  # the lam's weights are only hashed into the dynamics' config
        if not (args.out / stage).exists():
            os.symlink((args.run / stage).resolve(), args.out / stage)
    done = args.out / ORACLE_DONE
    if not done.is_file():  # a run cut short (Ctrl-C) resumes from the dynamics' last checkpoint
        results = train_genie(GenieTrainConfig(data=args.data, out=args.out, stage="dynamics", steps=args.steps,
                                               resume=(args.out / "dynamics").exists()))
        # world.json would pair the linked 8-action LAM with this 81-action dynamics: not a world to load
        (args.out / WORLD_FILE).unlink(missing_ok=True)
        if results["dynamics"].interrupted:
            raise SystemExit(130)
        done.write_text("the dynamics here was trained on the camera-shift oracle with a motion-compensated keep path\n")
    tokenizer = load_pretrained(args.out / "tokenizer", "genie-tokenizer").eval()
    dynamics = load_pretrained(args.out / "dynamics", "genie-dynamics").eval()
    try:
        means, count = evaluate(tokenizer, dynamics, args.eval_data, args.max_clips, args.batch_size, args.sample_steps,
                         args.seed)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    random_t4 = float(means.pop("random_t4"))
    report = {"run": str(args.run), "out": str(args.out), "eval_data": str(args.eval_data),
              "clips": count, "sample_steps": args.sample_steps,
              **{name: {f"t{k}": round(float(m[k - 1]), 2) for k in ROLLOUT_STEPS} for name, m in means.items()},
              "delta_psnr_t4": round(float(means["oracle"][DELTA_STEP - 1]) - random_t4, 2)}
    print(json.dumps(report))
    print(f"{'':18s}" + "".join(f"{f't{k}':>8s}" for k in ROLLOUT_STEPS))
    for name, m in means.items():
        print(f"{name:18s}" + "".join(f"{float(m[k - 1]):8.2f}" for k in ROLLOUT_STEPS))
    print(f"delta_psnr_t4 {report['delta_psnr_t4']:.2f} (random shifts at t4: {random_t4:.2f})")


if __name__ == "__main__":
    main()
