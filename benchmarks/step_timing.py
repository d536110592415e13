"""Timing one optimizer step the way the training engine takes it (shared by the cost benchmarks)."""

from __future__ import annotations

import statistics
import time

import torch

from nextworld.train.config import TrainConfig
from nextworld.train.optim import build_optimizer


def time_steps(model: torch.nn.Module, make_batch, cfg: TrainConfig, steps: int, warmup: int) -> float:
    """Median seconds of one optimizer step (batch preparation included)."""
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        batch = make_batch()
        loss, _ = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        after_step = getattr(model, "after_optimizer_step", None)
        if after_step is not None:  # e.g. an EMA target, as the engine does
            with torch.no_grad():
                after_step(i, warmup + steps)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)
