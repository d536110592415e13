"""AdamW with decoupled weight decay on matrices only, and its warmup + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from nextworld.train.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model``.

    Weight decay applies to parameters with ndim >= 2 (weights of linear, conv and
    embedding layers); biases and norm gains are not decayed. The fused kernel is used on
    CUDA; on CPU the plain per-parameter loop keeps results bit-reproducible.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=lr_at(0, cfg), betas=cfg.betas, fused=fused, foreach=False)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based).

    Linear warmup: step s < warmup_steps uses lr * (s + 1) / warmup_steps, so the last
    warmup step reaches lr. Then a cosine from lr at ``warmup_steps`` down to
    lr * min_lr_ratio at ``steps`` (and flat after).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    lr_min = cfg.lr * cfg.min_lr_ratio
    return lr_min + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - lr_min)
