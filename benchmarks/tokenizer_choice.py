"""Which video tokenizer (issue 3, Genie point 1): conv VQ-VAE or ST-ViViT, by held-out PSNR per CPU-second.

Trains two tokenizers on the same CoinRun clips for the same CPU-time budget each, then
evaluates both on held-out clips with ``evaluate_tokenizer``:

1. ``conv``: the ``tiny`` preset (frame-wise conv VQ-VAE, 4x4 pixels per token, 512 codes of
   8 dimensions; 4 random frames of each 16-frame clip reconstructed per step);
2. ``st``: Genie's ST-ViViT with the same token grid and quantizer, sized so that one step costs
   about what conv's does (measured on 2 shared cores, 1 thread: width 48, 2 heads and 2 blocks
   each in encoder and decoder took 0.33 s against conv's 0.29-0.35 s; width 64 with 1 block
   matched too, but one block mixes space and time only once). Its temporal window is 4 frames
   and it trains on one contiguous window per clip, so both reconstruct 32 frames a step.

Both: batches of 8 clips of 16 frames (stride 4), AdamW lr 2e-3 (weight decay 0.01 on matrices,
betas 0.9/0.95), gradient clipping 1.0, linear warmup over 100 steps, then a cosine to 0.1 lr
whose progress is the fraction of the budget used. The budget is CPU time of this process
(``time.process_time``, all its threads) spent in training steps (forward, backward, optimizer;
reading batches is left out, as it is the same for both and the second model would find the
clips already in the page cache): ``--minutes`` CPU minutes per model, about ``minutes / threads``
wall minutes of steps on idle cores; unlike wall time it leaves other processes' load out.
Step cost: median of ``--time-steps`` steps on one fixed batch, before training.

PSNR per CPU-second: the verdict is the held-out PSNR each reaches within the same budget;
``db_per_cpu_minute`` is the rate, (held-out PSNR after training - that of the untrained model)
/ CPU minutes of training.

    python benchmarks/tokenizer_choice.py --data DIR --heldout DIR [--minutes 8] [--threads 2]

DIRs are episode datasets made by ``nextworld collect coinrun``. Prints one JSON line and a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time

import torch

from nextworld.data.windows import ClipDataset, ResumableBatchSampler, WindowSpec, open_clips
from nextworld.eval.tokenizer_eval import evaluate_tokenizer
from nextworld.models.genie import TOKENIZER_PRESETS, TokenizerConfig, VideoTokenizer
from nextworld.train.config import TrainConfig
from nextworld.train.optim import build_optimizer

SPEC = WindowSpec(length=16, stride=4)
TRAIN = TrainConfig(lr=2e-3, warmup_steps=100, batch_size=8)


def lr_at(step: int, progress: float) -> float:
    """Warmup by steps, then cosine by the share of the CPU budget used (``progress`` in [0, 1])."""
    if step < TRAIN.warmup_steps:
        return TRAIN.lr * (step + 1) / TRAIN.warmup_steps
    lr_min = TRAIN.lr * TRAIN.min_lr_ratio
    return lr_min + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (TRAIN.lr - lr_min)


def train_step(model: VideoTokenizer, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> None:
    loss, _ = model.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN.grad_clip)
    opt.step()


def step_cost(config: TokenizerConfig, batch: dict[str, torch.Tensor], steps: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one training step on ``batch``, after one untimed step."""
    torch.manual_seed(0)
    model = VideoTokenizer(config).train()
    opt = build_optimizer(model, TRAIN, torch.device("cpu"))
    walls, cpus = [], []
    for i in range(steps + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        train_step(model, opt, batch)
        if i:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def train_and_evaluate(config: TokenizerConfig, train: ClipDataset, heldout: ClipDataset,
                       args: argparse.Namespace) -> dict[str, float]:
    """Train for ``args.minutes`` CPU minutes of steps from seed 0, then evaluate on ``heldout``."""
    torch.manual_seed(0)
    model = VideoTokenizer(config).train()
    initial = evaluate_tokenizer(model, heldout, max_clips=args.eval_clips)["tokenizer_psnr"]
    opt = build_optimizer(model, TRAIN, torch.device("cpu"))
    order = ResumableBatchSampler(len(train), TRAIN.batch_size, seed=0)
    budget, steps, cpu, wall = args.minutes * 60, 0, 0.0, 0.0
    while cpu < budget:
        batch = {"frames": torch.stack([train[i]["frames"] for i in order.batch_indices(steps)])}
        for group in opt.param_groups:
            group["lr"] = lr_at(steps, cpu / budget)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        train_step(model, opt, batch)
        cpu, wall = cpu + time.process_time() - cpu0, wall + time.perf_counter() - wall0
        steps += 1
    result = evaluate_tokenizer(model, heldout, max_clips=args.eval_clips)
    return {"steps": steps, "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
            "cpu_s_per_step": round(cpu / max(steps, 1), 3), "wall_s_per_step": round(wall / max(steps, 1), 3),
            "heldout_psnr": round(result["tokenizer_psnr"], 2), "heldout_ssim": round(result["tokenizer_ssim"], 3),
            "codebook_usage": round(result["codebook_usage"], 3), "untrained_psnr": round(initial, 2),
            "db_per_cpu_minute": round((result["tokenizer_psnr"] - initial) / (cpu / 60), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="training episode dataset (64x64 frames)")
    parser.add_argument("--heldout", required=True, help="held-out episode dataset (64x64 frames)")
    parser.add_argument("--minutes", type=float, default=8.0, help="CPU minutes of training per model")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--time-steps", type=int, default=5, help="timed steps for the step cost (median)")
    parser.add_argument("--eval-clips", type=int, default=64, help="held-out clips evaluated (16 frames each)")
    parser.add_argument("--st-dim", type=int, default=48)
    parser.add_argument("--st-depth", type=int, default=2)
    parser.add_argument("--st-heads", type=int, default=2)
    parser.add_argument("--st-window", type=int, default=4, help="st_max_frames of the ST-ViViT")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    conv = TOKENIZER_PRESETS["tiny"]
    configs = {"conv": conv, "st": dataclasses.replace(conv, arch="st", st_dim=args.st_dim, st_depth=args.st_depth,
                                                       st_heads=args.st_heads, st_max_frames=args.st_window)}
    train = open_clips(args.data, SPEC, keys=("frames",), frame_shape=conv.frame_shape, verify="lazy")
    heldout = open_clips(args.heldout, SPEC, keys=("frames",), frame_shape=conv.frame_shape, verify="lazy")
    fixed = {"frames": torch.stack([train[i]["frames"] for i in range(TRAIN.batch_size)])}  # (8, 16, 64, 64, 3)
    load_before = os.getloadavg()
    results = {}
    for name, config in configs.items():
        wall, cpu = step_cost(config, fixed, args.time_steps)
        params = sum(p.numel() for p in VideoTokenizer(config).parameters())
        print(f"{name}: {params:,} parameters, one step {wall:.3f} s wall / {cpu:.3f} s CPU; "
              f"training {args.minutes:g} CPU minutes ...", flush=True)
        results[name] = {"params": params, "step_wall_s": round(wall, 3), "step_cpu_s": round(cpu, 3),
                         **train_and_evaluate(config, train, heldout, args)}
    print(json.dumps({
        "benchmark": "tokenizer_choice", "torch": torch.__version__, "threads": args.threads,
        "minutes_cpu": args.minutes, "train_clips": len(train), "heldout_clips": len(heldout),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "st_config": {k: v for k, v in dataclasses.asdict(configs["st"]).items() if k.startswith("st_")},
        "results": results}))
    print()
    for name, r in results.items():
        print(f"{name:4s} step {r['step_cpu_s']:.3f} CPU-s ({r['step_wall_s']:.3f} wall-s), {r['steps']} steps in "
              f"{r['train_cpu_s']:.0f} CPU-s -> held-out PSNR {r['heldout_psnr']:.2f} dB (untrained "
              f"{r['untrained_psnr']:.2f}), SSIM {r['heldout_ssim']:.3f}, {100 * r['codebook_usage']:.1f}% of codes, "
              f"{r['db_per_cpu_minute']:.3f} dB per CPU-minute")
    best = max(results, key=lambda n: results[n]["heldout_psnr"])
    gap = abs(results["conv"]["heldout_psnr"] - results["st"]["heldout_psnr"])
    print(f"higher held-out PSNR within {args.minutes:g} CPU minutes: {best} (by {gap:.2f} dB); "
          f"load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
