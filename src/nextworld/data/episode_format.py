"""Episode datasets on disk: a directory of ``meta.json`` plus sharded ``.npy`` arrays.

Layout::

    DIR/meta.json                     schema, fps, frame shape, action space, source, counts,
                                      shard list (file sizes + sha256), episode table
    DIR/shards/000000/frames.npy      uint8 [N, H, W, C]   N = frames of all episodes in the shard
    DIR/shards/000000/actions.npy     int64 [N] or float32 [N, A]   (absent for action-free data)
    DIR/shards/000000/rewards.npy     float32 [N]
    DIR/shards/000000/terminations.npy, truncations.npy   bool [N]
    DIR/shards/000000/label_<name>.npy                    hidden labels, [N, ...]

Row ``t`` of an episode holds frame ``t``, the action taken after it, and that action's
reward and end flags. A source that observes the terminal frame (Gymnasium) stores it as
the last row with action 0, reward 0 and flags False; one that does not (Procgen) ends
on the last frame it saw, whose row carries the final reward and flag.

Why ``.npy`` shards: they memory-map, so a reader touches only the windows it samples
(the whole dataset is never loaded), they need no extra dependency, and
random 16-frame reads from them measured about 3x faster than HDF5 (docs/benchmarks.md).

A writer builds the whole dataset in a hidden staging directory beside ``DIR`` and renames
it into place when it closes, so a failed or interrupted write never leaves a half-written
dataset, and ``overwrite`` keeps the old dataset until the new one is complete.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from nextworld.errors import UserInputError

SCHEMA_VERSION = 1
META_NAME = "meta.json"


def space_to_json(space: gym.Space | None) -> dict[str, Any]:
    """A Gymnasium action space as plain JSON (``{"type": "none"}`` for action-free data)."""
    if space is None:
        return {"type": "none"}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "box",
            "shape": list(space.shape),
            "low": np.asarray(space.low, dtype=np.float64).reshape(-1).tolist(),
            "high": np.asarray(space.high, dtype=np.float64).reshape(-1).tolist(),
        }
    raise UserInputError(f"action space {space} is not supported: only Discrete and Box are")


def space_from_json(spec: dict[str, Any]) -> gym.Space | None:
    """Inverse of :func:`space_to_json`."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "none":
        return None
    if kind == "discrete":
        return gym.spaces.Discrete(int(spec["n"]))
    if kind == "box":
        shape = tuple(spec["shape"])
        low = np.asarray(spec["low"], dtype=np.float32).reshape(shape)
        high = np.asarray(spec["high"], dtype=np.float32).reshape(shape)
        return gym.spaces.Box(low=low, high=high, dtype=np.float32)
    raise ValueError(f"unknown action space type {kind!r}")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Episode:
    """One episode held in memory, rows aligned as described in the module docstring."""

    frames: np.ndarray  # uint8 [T, H, W, C]
    actions: np.ndarray | None = None  # int64 [T] or float32 [T, A]
    rewards: np.ndarray | None = None  # float32 [T]
    terminations: np.ndarray | None = None  # bool [T]
    truncations: np.ndarray | None = None  # bool [T]
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [T, ...]
    level: int | None = None
    seed: int | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def parse_range(text: str, what: str = "range") -> tuple[int, int]:
    """Parse ``"A:B"`` into ``(A, B)`` with ``A < B``; raises UserInputError otherwise."""
    try:
        lo_s, hi_s = text.split(":")
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise UserInputError(f"{what} {text!r}: expected A:B with integers A < B") from None
    if lo < 0 or hi <= lo:
        raise UserInputError(f"{what} {text!r}: expected 0 <= A < B")
    return lo, hi
