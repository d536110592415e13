"""How much of the recorded action do the frames show to a reader trained *with* the labels?

``action_visibility.py`` bounds ``action_nmi`` with hand-made oracles that read the camera's
motion. Those miss what else the frames show (the agent's sprite faces the way it last walked,
its pose changes in a jump). This probe trains a small supervised inverse-dynamics CNN on a
training split: from frames t-K+2 .. t+1 (the frames a latent action model may read for the
transition t -> t+1) it predicts the recorded a_t. Its held-out predictions, scored with the
same NMI as ``action_nmi``, bound what an *unsupervised* latent action model could reach on
this data from these frames, up to what a bigger reader or longer training would add.

    python benchmarks/action_ceiling.py --data TRAIN --eval-data HELDOUT [--context 3] [--steps 3000]
        [--crop 0]   # > 0: read only the central CROP x CROP pixels (the agent, as the camera follows it)

Prints one JSON line (held-out NMI with the 15 recorded actions, accuracy over the 15 and over
the six classes the game tells apart, the majority baseline). About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from action_visibility import EFFECTIVE_COINRUN  # Procgen's 15 ids -> the six classes CoinRun tells apart
from nextworld.data.episodes import EpisodeDataset
from nextworld.eval.metrics import normalised_mutual_information as nmi


def load(path: str, episodes: int, context: int, crop: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of up to ``episodes`` evenly spaced episodes and the (episode, t) rows that have
    ``context`` frames ending at t+1. Frames come back (T, 3, h, w) uint8, cropped when asked."""
    ds = EpisodeDataset(path)
    if ds.meta.get("action_space", {}).get("type") != "discrete":
        raise SystemExit(f"{path}: needs recorded discrete actions")
    picks = np.linspace(0, len(ds) - 1, min(episodes, len(ds))).round().astype(int)
    frames, rows = [], []
    for i, e in enumerate(picks):
        r = ds.read(int(e), 0, ds.episodes[e].length, keys=("frames", "actions"))
        f = np.ascontiguousarray(r["frames"].transpose(0, 3, 1, 2))
        if crop:
            h, w = f.shape[2:]
            top, left = (h - crop) // 2, (w - crop) // 2
            f = np.ascontiguousarray(f[:, :, top:top + crop, left:left + crop])
        frames.append(f)
        for t in range(context - 2, len(f) - 1):  # frames t-context+2 .. t+1 exist
            rows.append((i, t, int(r["actions"][t])))
    return frames, np.array(rows)


def batch(frames: list[np.ndarray], rows: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.stack([frames[i][t - context + 2:t + 2].reshape(-1, *frames[i].shape[2:]) for i, t, _ in rows])
    return torch.from_numpy(x).float().div_(255.0), torch.from_numpy(rows[:, 2]).long()


class Reader(nn.Module):
    def __init__(self, channels: int, classes: int, size: int) -> None:
        super().__init__()
        layers, c = [], channels
        for width in (32, 64, 128, 128):
            stride = 2 if size > 4 else 1
            layers += [nn.Conv2d(c, width, 3, stride, 1), nn.GroupNorm(8, width), nn.SiLU()]
            c, size = width, (size + 1) // stride if stride == 2 else size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="training split with recorded discrete actions")
    parser.add_argument("--eval-data", required=True, help="held-out split to score on")
    parser.add_argument("--context", type=int, default=3, help="frames read, ending at t+1 (at least 2)")
    parser.add_argument("--crop", type=int, default=0, help="read only the central CROP x CROP pixels (0: all)")
    parser.add_argument("--episodes", type=int, default=600, help="training episodes read, evenly spaced")
    parser.add_argument("--eval-episodes", type=int, default=120)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.context < 2:
        raise SystemExit(f"--context {args.context}: needs at least frames t and t+1")
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.time()
    frames, rows = load(args.data, args.episodes, args.context, args.crop)
    eval_frames, eval_rows = load(args.eval_data, args.eval_episodes, args.context, args.crop)
    classes = max(int(rows[:, 2].max()), int(eval_rows[:, 2].max())) + 1
    size = frames[0].shape[-1]
    model = Reader(3 * args.context, classes, size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    model.train()
    for step in range(args.steps):
        x, y = batch(frames, rows[rng.integers(0, len(rows), args.batch)], args.context)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    model.eval()
    predictions = []
    with torch.no_grad():
        for i in range(0, len(eval_rows), 512):
            predictions.append(model(batch(eval_frames, eval_rows[i:i + 512], args.context)[0]).argmax(-1).numpy())
    predicted, true = np.concatenate(predictions), eval_rows[:, 2]
    result = {"data": args.data, "eval_data": args.eval_data, "context": args.context, "crop": args.crop,
              "steps": args.steps, "train_transitions": len(rows), "eval_transitions": len(eval_rows),
              "nmi": round(nmi(predicted, true), 4), "accuracy": round(float((predicted == true).mean()), 4),
              "majority_accuracy": round(float(np.bincount(true).max() / len(true)), 4),
              "seconds": round(time.time() - start, 1)}
    if classes <= len(EFFECTIVE_COINRUN):
        eff_pred, eff_true = EFFECTIVE_COINRUN[predicted], EFFECTIVE_COINRUN[true]
        result["effective_accuracy"] = round(float((eff_pred == eff_true).mean()), 4)
        result["effective_majority_accuracy"] = round(float(np.bincount(eff_true).max() / len(eff_true)), 4)
        result["nmi_of_effective_prediction"] = round(nmi(eff_pred, true), 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
