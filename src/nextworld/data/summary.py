"""A one-look summary of an episode dataset (what `nextworld info` shows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nextworld.data.episodes import EpisodeDataset


@dataclass
class DatasetSummary:
    path: Path
    episodes: int
    frames: int
    frame_shape: tuple[int, int, int]
    fps: float
    action_space: dict[str, Any]
    labels: list[str]
    levels: tuple[int, int] | None
    """Smallest and largest recorded level, if any episode has one."""
    seeds: tuple[int, int] | None
    """Smallest and largest recorded reset seed, if any episode has one."""
    episode_length: tuple[int, float, int]
    """Shortest, mean and longest episode in frames."""
    shards: int
    bytes_on_disk: int
    source: dict[str, Any]
    split: dict[str, Any] | None
    """How the episodes were drawn from the source (by level or seed range), if recorded."""
    verified: bool
    """Whether every shard's checksum was checked."""


def summarize_dataset(path: str | Path, verify: bool = False) -> DatasetSummary:
    """Summarise a dataset from its meta.json (plus a full checksum pass if ``verify``)."""
    ds = EpisodeDataset(path, verify="full" if verify else "none")
    lengths = np.array([e.length for e in ds.episodes]) if ds.episodes else np.zeros(1, int)
    levels = [e.level for e in ds.episodes if e.level is not None]
    seeds = [e.seed for e in ds.episodes if e.seed is not None]
    return DatasetSummary(
        path=Path(path), episodes=len(ds), frames=ds.num_frames, frame_shape=ds.frame_shape, fps=ds.fps,
        action_space=ds.meta["action_space"], labels=ds.label_names,
        levels=(min(levels), max(levels)) if levels else None,
        seeds=(min(seeds), max(seeds)) if seeds else None,
        episode_length=(int(lengths.min()), float(lengths.mean()), int(lengths.max())),
        shards=len(ds.meta["shards"]), bytes_on_disk=ds.size_on_disk(), source=ds.meta.get("source", {}),
        split=ds.meta.get("split"),
        verified=verify)
