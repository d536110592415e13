"""`nextworld eval`: measure a trained run on held-out data and write the metrics as JSON.

The run's family decides what is measured. A Genie run (``RUN/tokenizer/...``) or a bare
tokenizer checkpoint gives ``tokenizer_psnr``, ``tokenizer_ssim`` and ``codebook_usage``
(DESIGN.md, "Metric definitions"); the keys of later Genie stages join as they land.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from nextworld.atomic_files import write_json_atomic
from nextworld.data.windows import WindowSpec, open_clips
from nextworld.errors import UserInputError
from nextworld.eval.tokenizer_eval import evaluate_tokenizer
from nextworld.models.base import CONFIG_NAME, load_pretrained, read_checkpoint_config
from nextworld.models.genie.pictures import save_reconstructions
from nextworld.train.distributed import resolve_device

EVAL_WINDOW = WindowSpec(length=16, stride=16)
"""Held-out clips: 16 frames, non-overlapping."""


@dataclass
class EvalConfig:
    """Evaluate a trained run on held-out data and write its metrics as JSON."""

    run: Annotated[Path, tyro.conf.Positional]
    """Run directory (from `nextworld train`) or a checkpoint directory."""
    data: Path
    """Held-out dataset directory (e.g. CoinRun levels >= 100,000)."""
    json: Path | None = None
    """Write the metrics here (and a picture of reconstructions beside it)."""
    levels: str | None = None
    """Evaluate only episodes whose level lies in A:B (all when unset)."""
    max_clips: int = 64
    """Held-out 16-frame clips to evaluate at most (evenly spaced over the data)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""


def _tokenizer_dir(run: Path) -> Path:
    """The tokenizer checkpoint of a Genie run, or the run itself if it is one."""
    if (run / "tokenizer" / CONFIG_NAME).is_file():
        return run / "tokenizer"
    if not run.is_dir():
        raise UserInputError(f"{run}: run directory does not exist")
    family = read_checkpoint_config(run)["family"]
    if family != "genie-tokenizer":
        raise UserInputError(f"{run}: a {family!r} checkpoint; eval knows Genie runs so far")
    return run


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Measure ``cfg.run`` on ``cfg.data``; returns the metrics (also written to ``cfg.json``)."""
    if cfg.max_clips < 1:
        raise UserInputError(f"max_clips {cfg.max_clips}: must be at least 1")
    tokenizer_dir = _tokenizer_dir(cfg.run)
    device = resolve_device(cfg.device)
    tokenizer = load_pretrained(tokenizer_dir, family="genie-tokenizer").to(device)
    clips = open_clips(cfg.data, EVAL_WINDOW, levels=cfg.levels, keys=("frames",),
                       frame_shape=tokenizer.config.frame_shape, verify="lazy")
    metrics: dict[str, Any] = evaluate_tokenizer(tokenizer, clips, max_clips=cfg.max_clips, device=device)
    metrics.update({"run": str(cfg.run), "data": str(cfg.data), "levels": cfg.levels,
                    "num_clips": min(cfg.max_clips, len(clips))})
    if cfg.json is not None:
        picture = cfg.json.with_name(cfg.json.stem + "_reconstructions.png")
        save_reconstructions(tokenizer, clips, picture)
        metrics["reconstructions"] = str(picture)
        write_json_atomic(cfg.json, metrics)
    return metrics
