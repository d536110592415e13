"""The training configuration every model family shares."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nextworld.errors import UserInputError


@dataclass
class TrainConfig:
    """How the engine trains a model; saved under ``"train"`` in a run's config.json."""

    steps: int = 1000
    """Optimizer steps in total."""
    batch_size: int = 8
    """Global clips per optimizer step, summed over all processes and accumulation micro-batches."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (each process splits its share of the batch into this many)."""
    lr: float = 3e-4
    """Peak learning rate, reached at the end of warmup."""
    weight_decay: float = 0.01
    """AdamW weight decay, applied to parameters with ndim >= 2 only (not to biases and norms)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW moment decay rates."""
    warmup_steps: int = 100
    """Steps of linear warmup from lr / warmup_steps to lr."""
    min_lr_ratio: float = 0.1
    """The cosine decays to lr * min_lr_ratio at ``steps``."""
    grad_clip: float = 1.0
    """Maximum global gradient norm; 0 disables clipping (the norm is still logged)."""
    seed: int = 0
    """Seeds the batch order and the random generators (process r uses rng.derive_seed(seed, r)); >= 0."""
    log_every: int = 10
    """Steps between metric records (metrics.jsonl, TensorBoard, the progress bar's loss)."""
    ckpt_every: int = 200
    """Steps between checkpoints; one is also written at the end and on Ctrl-C / SIGTERM (0: only those)."""
    num_workers: int = 0
    """DataLoader worker processes (0 reads clips in the training process)."""
    amp: bool = True
    """bf16 autocast on CUDA; ignored on CPU."""
    compile: bool = False
    """torch.compile the model's loss."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N; auto and cuda take cuda:LOCAL_RANK under torchrun (where cuda:N is refused)."""
    progress: bool = True
    """Show a progress bar with throughput, ETA and the latest loss (main process only)."""

    def check(self, world_size: int) -> None:
        """Raise UserInputError for values no run can use on ``world_size`` processes."""
        positive = {"steps": self.steps, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "log_every": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise UserInputError(f"train.{name} must be >= 1, got {value}")
        for name in ("warmup_steps", "ckpt_every", "num_workers", "grad_clip", "weight_decay", "lr", "seed"):
            if getattr(self, name) < 0:
                raise UserInputError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserInputError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.batch_size % (world_size * self.grad_accum):
            raise UserInputError(
                f"train.batch_size {self.batch_size} must be divisible by processes x grad_accum "
                f"= {world_size} x {self.grad_accum}")


OVERRIDABLE = ("steps", "batch_size", "lr", "ckpt_every", "seed")
"""TrainConfig fields a training command may set (None: keep the recipe's or the resumed run's)."""


def with_command_options(base: TrainConfig, options: Any, resuming: bool) -> TrainConfig:
    """``base`` (a preset's recipe, or a resumed run's saved settings) with a training command's
    options applied: those of ``OVERRIDABLE`` that are not None, and always ``device``,
    ``num_workers``, ``compile`` and ``progress``. A new run's seed is 0 unless given; a resumed
    one keeps its own, so a resume continues exactly."""
    overrides = {name: getattr(options, name) for name in OVERRIDABLE if getattr(options, name) is not None}
    if not resuming:
        overrides.setdefault("seed", 0)
    return dataclasses.replace(base, device=options.device, num_workers=options.num_workers, compile=options.compile,
                               progress=options.progress, **overrides)
