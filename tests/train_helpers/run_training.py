"""Train the tiny test model: ``python -m train_helpers.run_training DATA OUT [options]``.

Exits 130 when interrupted (as the CLI does). ``--seconds-per-loss`` slows each
micro-batch so a test can signal the process mid-run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nextworld.train import TrainConfig, fit
from train_helpers import FAMILY, clips, make_model


def main() -> int:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=10)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seconds-per-loss", type=float, default=0.0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()

    model = make_model(dropout=args.dropout)
    model.seconds_per_loss = args.seconds_per_loss
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=1e-2,
                      warmup_steps=3, log_every=1, ckpt_every=args.ckpt_every, device="cpu", progress=False)
    result = fit(model, FAMILY, clips(args.data), cfg, args.out, resume=args.resume)
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
