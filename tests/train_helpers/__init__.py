"""A test-only model family for the training-engine tests, and helpers to run and inspect runs.

``python -m train_helpers.run_training`` (with ``tests/`` on PYTHONPATH) trains it in a
subprocess, alone or under torchrun.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.windows import ClipDataset, WindowSpec
from nextworld.models.base import register_family

FAMILY = "test-train-tiny"
TESTS_DIR = Path(__file__).resolve().parents[1]


@dataclass
class TinyConfig:
    width: int = 8
    """Hidden channels."""
    dropout: float = 0.1
    """Dropout on the hidden features, so that a resume must restore the RNG to match."""
    n_actions: int = 4
    """Discrete actions of the data."""


class TinyPredictor(nn.Module):
    """Predicts frame t+1 from frame t and action t with two 3x3 convs."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.action_emb = nn.Embedding(config.n_actions, config.width)
        self.inp = nn.Conv2d(3, config.width, 3, padding=1)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Conv2d(config.width, 3, 3, padding=1)
        self.seconds_per_loss = 0.0  # set by tests that need a slow run to interrupt

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.seconds_per_loss:
            time.sleep(self.seconds_per_loss)
        frames = batch["frames"].permute(0, 1, 4, 2, 3).float() / 255  # (B, T, C, H, W)
        x, y = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)  # (B*(T-1), C, H, W)
        a = self.action_emb(batch["actions"][:, :-1].flatten())  # (B*(T-1), width)
        h = F.gelu(self.inp(x) + a[:, :, None, None])
        pred = self.out(self.drop(h))
        loss = F.mse_loss(pred, y)
        return loss, {"losses/mse": loss.detach(), "charts/pred_mean": float(pred.detach().mean())}


register_family(FAMILY, TinyConfig, TinyPredictor)


def clips(data_dir: Path) -> ClipDataset:
    """4-frame clips of a dataset made by conftest.make_dataset."""
    return ClipDataset(EpisodeDataset(data_dir), WindowSpec(length=4))


def make_model(seed: int = 0, **config: Any) -> TinyPredictor:
    torch.manual_seed(seed)
    return TinyPredictor(TinyConfig(**config))


def state_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model weights of a run's training_state."""
    return load_file(str(run_dir / "training_state" / "model.safetensors"))


def training_command(data_dir: Path, run_dir: Path, *options: str, processes: int = 1) -> list[str]:
    """The command line of run_training, under torchrun when ``processes`` > 1."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    return [sys.executable, *launcher, "-m", "train_helpers.run_training", str(data_dir), str(run_dir), *options]


def subprocess_env() -> dict[str, str]:
    """The environment for training subprocesses: train_helpers importable, one thread each."""
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def saved_step(run_dir: Path) -> int:
    """The step of a run's training_state, or -1 while there is none (or it is being swapped)."""
    try:
        return json.loads((run_dir / "training_state" / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def logged_steps(run_dir: Path) -> list[int]:
    """The steps of the complete records in a run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
