"""Genie training-step speed (issue 3, point 11): dynamics and tokenizer, against Jafar's numbers.

Times one training step (forward, backward, AdamW) as the median of ``--steps`` steps after
``--warmup`` steps, for:

1. the dynamics at batch 8, 16 frames, 8x8 tokens per frame, width 256, 6 blocks, 1024 codes
   (8 heads, MLP ratio 4), and the share of the machine's measured fp32 matmul throughput it reaches;
2. the tokenizer at batch 8, 16 frames of 64x64: the ``tiny`` preset with 8x8 pixels per token and
   with 4x4 (the preset's own since issue 3, and the issue's reference), each as
   trained (``loss_frames`` of the preset: 4 of the 16 frames reconstructed) and with all 16 frames.

Peak throughput: the best of several 2048x2048 fp32 matmuls, in GFLOP/s, measured before and
after the dynamics steps (the larger is used: on shared cores both vary with other load).

Dynamics FLOPs per step (an analytic count, as in Kaplan et al. 2020 / PaLM's MFU):
    6 * P_matmul * N  +  12 * depth * dim * (S + T) * N
with N = B * T * S tokens, P_matmul = the weights of every nn.Linear (embeddings are lookups,
not matmuls), 6 = 2 FLOPs per multiply-add times 3 for forward + backward. The second term is
attention's QK^T and AV: per token and block 4 * dim * S FLOPs forward for spatial attention
and 4 * dim * T for temporal (counted as full: the causal half is not subtracted), times 3.
LayerNorm, softmax, GELU, cross-entropy and the optimizer are not counted.

    python benchmarks/genie_step_speed.py [--steps 5] [--warmup 2] [--device cpu]

Prints one JSON line and a human summary. Jafar (JAX Genie) on the reference 2-core machine:
7.94 s per dynamics step, 55 s per tokenizer step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from nextworld.models.genie import TOKENIZER_PRESETS, VideoTokenizer
from nextworld.models.genie.dynamics import DynamicsConfig, GenieDynamics

JAFAR_SECONDS = {"dynamics": 7.94, "tokenizer": 55.0}
BATCH, FRAMES = 8, 16
DYNAMICS = DynamicsConfig(num_codes=1024, token_grid=(8, 8), dim=256, depth=6, heads=8, max_frames=FRAMES)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 8) -> float:
    """Best observed fp32 GFLOP/s of an n x n @ n x n matmul."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def time_steps(model: nn.Module, batch: dict[str, torch.Tensor], steps: int, warmup: int,
               device: torch.device) -> float:
    """Median seconds of one forward + backward + AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def dynamics_step_flops(model: GenieDynamics) -> float:
    """The analytic FLOP count of one training step at BATCH x FRAMES clips (see the module docstring)."""
    c = model.config
    tokens = BATCH * FRAMES * c.tokens_per_frame
    matmul_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    attention = 12 * c.depth * c.dim * (c.tokens_per_frame + FRAMES) * tokens
    return 6 * matmul_params * tokens + attention


def bench(name: str, make: Callable[[], nn.Module], batch: dict[str, torch.Tensor], args: argparse.Namespace,
          device: torch.device) -> tuple[nn.Module, float]:
    torch.manual_seed(0)
    model = make().to(device).train()
    seconds = time_steps(model, {k: v.to(device) for k, v in batch.items()}, args.steps, args.warmup, device)
    print(f"  {name}: {seconds:.3f} s/step", flush=True)
    return model, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    load_before = os.getloadavg()
    peak_before = peak_matmul_gflops(device)
    g = torch.Generator().manual_seed(0)
    dyn_batch = {"tokens": torch.randint(0, DYNAMICS.num_codes, (BATCH, FRAMES, *DYNAMICS.token_grid), generator=g),
                 "actions": torch.randint(0, DYNAMICS.num_actions, (BATCH, FRAMES), generator=g)}
    dyn, dyn_seconds = bench("dynamics", lambda: GenieDynamics(DYNAMICS), dyn_batch, args, device)
    peaks = (peak_before, peak_matmul_gflops(device))
    peak = max(peaks)
    print(f"peak fp32 matmul before / after: {peaks[0]:.1f} / {peaks[1]:.1f} GFLOP/s", flush=True)
    flops = dynamics_step_flops(dyn)
    achieved = flops / dyn_seconds / 1e9

    frames = {"frames": torch.randint(0, 256, (BATCH, FRAMES, 64, 64, 3), dtype=torch.uint8, generator=g)}
    tiny = TOKENIZER_PRESETS["tiny"]
    tokenizer_configs = {
        "tiny_ds8_4of16": dataclasses.replace(tiny, downsample=8),
        "tiny_ds8_16of16": dataclasses.replace(tiny, downsample=8, loss_frames=0),
        "tiny_ds4_4of16": dataclasses.replace(tiny, downsample=4),
        "tiny_ds4_16of16": dataclasses.replace(tiny, downsample=4, loss_frames=0),
    }
    tokenizer_seconds = {name: bench(f"tokenizer {name}", lambda c=cfg: VideoTokenizer(c), frames, args, device)[1]
                         for name, cfg in tokenizer_configs.items()}

    result = {
        "benchmark": "genie_step_speed", "device": str(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "steps": args.steps, "warmup": args.warmup, "peak_matmul_gflops": round(peak, 1),
        "peak_matmul_gflops_before_after": [round(x, 1) for x in peaks],
        "dynamics_step_s": round(dyn_seconds, 3), "dynamics_step_gflop": round(flops / 1e9, 1),
        "dynamics_gflops": round(achieved, 1), "dynamics_share_of_peak": round(achieved / peak, 3),
        "dynamics_speedup_vs_jafar": round(JAFAR_SECONDS["dynamics"] / dyn_seconds, 2),
        "tokenizer_step_s": {k: round(v, 3) for k, v in tokenizer_seconds.items()},
        "tokenizer_speedup_vs_jafar": {k: round(JAFAR_SECONDS["tokenizer"] / v, 1)
                                       for k, v in tokenizer_seconds.items()},
    }
    print(json.dumps(result))
    print(f"\ndynamics (B={BATCH}, T={FRAMES}, 8x8 tokens, width 256, 6 blocks, 1024 codes): "
          f"{dyn_seconds:.2f} s/step, {flops / 1e9:.0f} GFLOP -> {achieved:.1f} GFLOP/s = "
          f"{100 * achieved / peak:.0f}% of the measured {peak:.1f} GFLOP/s peak; "
          f"{JAFAR_SECONDS['dynamics'] / dyn_seconds:.1f}x Jafar's {JAFAR_SECONDS['dynamics']} s")
    for name, seconds in tokenizer_seconds.items():
        print(f"tokenizer {name} (B={BATCH}, T={FRAMES}, 64x64): {seconds:.2f} s/step, "
              f"{JAFAR_SECONDS['tokenizer'] / seconds:.0f}x Jafar's {JAFAR_SECONDS['tokenizer']} s")
    print(f"load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")


if __name__ == "__main__":
    main()
