"""nextworld's Dreamer: env steps per second of the online loop (acting + training), issue 5.

Runs ``nextworld train dreamer`` (the library call) on ``--env`` for ``--prefill`` random steps
and then ``--env-steps`` timed steps, at the tiny preset's sizes (or those given), with one
update every ``batch * seq_len / train_ratio`` env steps; no evaluation, one checkpoint at the
end (inside the timed window, as for a real run). The timed window is the same as
``benchmarks/sheeprl_dreamer.py``'s: from the end of the random prefill to the end of the run.

    python benchmarks/dreamer_throughput.py [--env-steps 2000] [--prefill 1024] [--train-ratio 64]
        [--batch 16] [--seq-len 64] [--threads 2] [--json out.json]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from nextworld.agents import dreamer
from nextworld.agents.dreamer import DreamerTrainConfig, train_dreamer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gym:MiniGrid-Empty-8x8-v0")
    parser.add_argument("--env-steps", type=int, default=2000, help="timed env steps, after --prefill")
    parser.add_argument("--prefill", type=int, default=1024, help="random env steps before training")
    parser.add_argument("--train-ratio", type=float, default=64.0, help="replayed steps per env step")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, recipe = dreamer.PRESETS["tiny"]
    dreamer.PRESETS["tiny"] = (model, dataclasses.replace(recipe, batch_size=args.batch, seq_len=args.seq_len))
    marks: dict[str, float] = {}
    original = dreamer._Learner.update

    def timed_update(self, batch):  # the first update marks the end of the random prefill
        marks.setdefault("first_update", time.perf_counter())
        return original(self, batch)

    dreamer._Learner.update = timed_update
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = train_dreamer(DreamerTrainConfig(
            env=args.env, out=Path(tmp) / "run", env_steps=args.prefill + args.env_steps, prefill=args.prefill,
            train_ratio=args.train_ratio, eval_every=0, ckpt_every=0, log_every=10 ** 9, progress=False))
        ended = time.perf_counter()
    seconds = ended - marks["first_update"]
    params = sum(p.numel() for p in dreamer.DreamerAgent(model).world_model.parameters())
    out = {"framework": "nextworld", "env": args.env, "env_steps": args.env_steps, "seconds": round(seconds, 3),
           "env_steps_per_second": round(args.env_steps / seconds, 3),
           "timed": "from the first update (the end of the random prefill) to the end of the run",
           "total_seconds": round(ended - started, 3), "prefill": args.prefill, "train_ratio": args.train_ratio,
           "updates": result.updates, "seconds_per_update": round(seconds / max(result.updates, 1), 4),
           "model": {"cnn_channels": [model.depth * 2 ** i for i in range(4)], "deter": model.deter,
                     "hidden": model.hidden, "units": model.units, "mlp_layers": model.layers, "stoch": model.stoch,
                     "classes": model.classes, "batch": args.batch, "seq_len": args.seq_len,
                     "world_model_params": params},
           "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine()}
    line = json.dumps(out)
    print(line)
    if args.json is not None:
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
