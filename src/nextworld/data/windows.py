"""Fixed-length windows (clips) over an episode dataset, and a resumable batch order.

A window of ``length`` frames with ``frame_skip`` k starting at row s covers rows
``s, s+k, ..., s+(length-1)k`` of one episode; consecutive starts are ``stride`` rows
apart. Windows never cross an episode boundary: a window exists only where its whole
span fits inside the episode. With a frame skip, the action of a window step is the
first action of the skipped block (``actions[s + i*k]``); its reward is the sum of the
block's rewards (rows ``s+i*k .. s+(i+1)*k-1``, cut at the episode end) and its end
flags are true if any row of the block has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from nextworld.data.episode_format import parse_range
from nextworld.data.episodes import EpisodeDataset, split_episodes
from nextworld.errors import UserInputError


@dataclass(frozen=True)
class WindowSpec:
    """How clips are cut from episodes."""

    length: int = 16
    """Frames per clip."""
    stride: int = 1
    """Rows between the starts of consecutive clips of one episode."""
    frame_skip: int = 1
    """Rows between consecutive frames of one clip."""

    @property
    def span(self) -> int:
        """Rows of an episode that one clip covers."""
        return (self.length - 1) * self.frame_skip + 1


def window_index(episode_lengths: Sequence[int], spec: WindowSpec,
                 episodes: Sequence[int] | None = None) -> np.ndarray:
    """All valid clip starts.

    Args:
        episode_lengths: frames per episode, for every episode of the dataset.
        spec: clip length, stride and frame skip.
        episodes: restrict to these episode indices (a split); all when None.

    Returns:
        int64 [N, 2]: (episode index, first row) of each clip.
    """
    if spec.length < 1 or spec.stride < 1 or spec.frame_skip < 1:
        raise ValueError(f"window length, stride and frame skip must be >= 1, got {spec}")
    chosen = range(len(episode_lengths)) if episodes is None else episodes
    parts = []
    for e in chosen:
        n_starts = (int(episode_lengths[e]) - spec.span) // spec.stride + 1
        if n_starts > 0:
            starts = np.arange(n_starts, dtype=np.int64) * spec.stride
            parts.append(np.stack([np.full_like(starts, e), starts], axis=1))
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(parts)


class ClipDataset(Dataset):
    """Map-style dataset of clips; item ``i`` is one window as torch tensors.

    An item is a dict with ``frames`` uint8 [T, H, W, C], ``rewards`` float32 [T],
    ``terminations``/``truncations`` bool [T], ``actions`` int64 [T] or float32 [T, A]
    when the data has actions, and ``label_<name>`` [T, ...] for hidden labels; ``keys``
    restricts it (an action-free family reads ``("frames",)`` so actions never reach it).
    """

    def __init__(self, data: EpisodeDataset, spec: WindowSpec,
                 episodes: Sequence[int] | None = None, keys: tuple[str, ...] | None = None) -> None:
        self.data = data
        self.spec = spec
        self.keys = keys
        self.index = window_index([e.length for e in data.episodes], spec, episodes)
        if len(self.index) == 0:
            longest = max((data.episodes[e].length for e in (episodes if episodes is not None else range(len(data)))),
                          default=0)
            raise UserInputError(
                f"{data.root}: no episode has enough frames for a {spec.length}-frame window "
                f"(span {spec.span} rows, longest episode {longest})")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        episode, start = (int(v) for v in self.index[i])
        k, n = self.spec.frame_skip, self.spec.length
        # Read whole skip blocks (clipped at the episode end) so that the last step's
        # reward and flags cover its block like every other step's.
        stop = min(start + n * k, self.data.episodes[episode].length)
        rows = self.data.read(episode, start, stop, keys=self.keys)
        out: dict[str, torch.Tensor] = {}
        for key, arr in rows.items():
            if k > 1 and key in ("rewards", "terminations", "truncations"):
                padded = np.concatenate([arr, np.zeros((-len(arr)) % k, arr.dtype)]).reshape(-1, k)  # (n, k)
                arr = padded.sum(axis=1) if key == "rewards" else padded.any(axis=1)
            else:
                arr = arr[::k]
            out[key] = torch.from_numpy(np.ascontiguousarray(arr[:n]))
        return out


class ResumableBatchSampler:
    """An endless, seeded order of batches that can start at any step.

    Each epoch is a fresh permutation of all clips drawn from ``(seed, epoch)``; batch
    ``step`` of the run is the ``step``-th run of ``global_batch`` clips in that order
    (the last incomplete batch of an epoch is dropped). Under data parallelism, rank r
    takes rows ``r::world_size`` of each global batch, so a run on N processes sees the
    same clips per step as a run on one.
    """

    def __init__(self, num_items: int, global_batch: int, *, seed: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} processes")
        if num_items < global_batch:
            raise UserInputError(f"only {num_items} clips in the data, fewer than one batch of {global_batch}")
        self.num_items = num_items
        self.global_batch = global_batch
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.batches_per_epoch = num_items // global_batch
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def batch_indices(self, step: int) -> list[int]:
        """The clip indices this rank reads at ``step``."""
        epoch, within = divmod(step, self.batches_per_epoch)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            # (seed, epoch) as entropy: runs with nearby seeds never share an epoch's order
            self._epoch_order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_items))
        batch = self._epoch_order[1][within * self.global_batch:(within + 1) * self.global_batch]
        return batch[self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch_indices(step)
            step += 1


def open_clips(path: str | Path, spec: WindowSpec, *, levels: str | None = None,
               keys: tuple[str, ...] | None = None, frame_shape: tuple[int, int, int] | None = None,
               verify: str = "full") -> ClipDataset:
    """Open a dataset for training or evaluation: episodes selected by level range ``"A:B"``,
    frame shape checked against what the model needs, checksums verified as ``verify`` says.

    Training keeps the default ``"full"``: every checksum in this process before a run
    directory is written or worker processes start. Evaluation, which reads a few clips in
    this process, passes ``"lazy"`` to hash only the shards it touches.
    """
    data = EpisodeDataset(path, verify=verify)
    if frame_shape is not None and tuple(data.frame_shape) != tuple(frame_shape):
        raise UserInputError(f"{path}: frames are {list(data.frame_shape)}, the model needs {list(frame_shape)}")
    episodes = None
    if levels is not None:
        episodes = split_episodes(data, levels=parse_range(levels, "levels"))
        if not episodes:
            raise UserInputError(f"{path}: no episode has a level in {levels}")
    return ClipDataset(data, spec, episodes=episodes, keys=keys)
