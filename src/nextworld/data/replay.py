"""A replay buffer for online agents: one stream of steps in memory, episodes on disk.

In memory the buffer holds every step as a row of the Dreamer layout
(``nextworld.models.dreamer.world_model``): the frame arrived at, the action that led there,
the reward received on arriving, ``is_first`` (a new episode starts here), ``is_terminal``
(the episode ended here by termination) and ``is_last`` (it ended here, by termination or a
time limit). Sequences are sampled anywhere in the stream, across episode boundaries:
``is_first`` tells the model to start its state afresh, so short episodes (an agent that
reaches its goal in 12 steps) are sampled as often as long ones.

On disk, :meth:`Replay.flush` appends the episodes completed since the last flush to an
episode dataset (``nextworld.data.episode_format``, the shared format), so what an agent
collected trains any other family, and a resumed run reloads its buffer from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from nextworld.data.episode_format import META_NAME, Episode
from nextworld.data.episode_writer import EpisodeWriter
from nextworld.data.episodes import EpisodeDataset

FIELDS = ("frames", "prev_actions", "rewards", "is_first", "is_terminal", "is_last")


class Replay:
    """Steps in the Dreamer layout, sampled as fixed-length sequences; a FIFO of ``capacity`` steps."""

    def __init__(self, frame_shape: tuple[int, int, int], action_space: gym.Space, capacity: int,
                 initial: int = 4096) -> None:
        self.frame_shape = tuple(frame_shape)
        self.action_space = action_space
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.capacity = int(capacity)
        self.size = 0
        """Rows held."""
        self.total = 0
        """Rows ever added."""
        self._arrays = self._allocate(min(initial, self.capacity))
        self._episode: list[dict[str, Any]] = []
        """The rows of the episode now running (kept to write it out once it ends)."""
        self._completed: list[Episode] = []
        """Episodes ended since the last flush."""

    def _allocate(self, rows: int) -> dict[str, np.ndarray]:
        action_shape = () if self.discrete else tuple(self.action_space.shape)
        return {"frames": np.zeros((rows, *self.frame_shape), np.uint8),
                "prev_actions": np.zeros((rows, *action_shape), np.int64 if self.discrete else np.float32),
                "rewards": np.zeros(rows, np.float32), "is_first": np.zeros(rows, bool),
                "is_terminal": np.zeros(rows, bool), "is_last": np.zeros(rows, bool)}

    def _rows(self) -> int:
        return len(self._arrays["rewards"])

    def add(self, frame: np.ndarray, prev_action: Any, reward: float, is_first: bool, is_terminal: bool,
            is_last: bool) -> None:
        """Append one step (see the module docstring); ``prev_action`` is ignored where ``is_first``."""
        if self.size == self._rows() and self.size < self.capacity:  # grow by doubling up to the capacity
            grown = self._allocate(min(2 * self.size, self.capacity))
            for key, array in self._arrays.items():
                grown[key][:self.size] = array
            self._arrays = grown
        row = self.total % self.capacity if self.size == self.capacity else self.size
        zero = np.zeros_like(self._arrays["prev_actions"][0])
        values = {"frames": frame, "prev_actions": zero if is_first else prev_action, "rewards": 0.0 if is_first else reward,
                  "is_first": is_first, "is_terminal": is_terminal, "is_last": is_last}
        for key, value in values.items():
            self._arrays[key][row] = value
        self.size = min(self.size + 1, self.capacity)
        self.total += 1
        if is_first:
            self._episode = []
        self._episode.append(values)
        if is_last:
            self._completed.append(steps_to_episode(self._episode, self.discrete, self.action_space))
            self._episode = []

    def sample(self, batch: int, length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch`` sequences of ``length`` consecutive steps, [batch, length, ...] per field; the first
        step of each is marked ``is_first`` (the model starts its state there)."""
        if self.size < length:
            raise ValueError(f"replay holds {self.size} steps, fewer than a sequence of {length}")
        starts = rng.integers(0, self.size - length + 1, size=batch)
        index = starts[:, None] + np.arange(length)[None]
        if self.size == self.capacity:  # a full ring: the oldest row is the next one to be overwritten
            index = (self.total + index) % self.capacity
        out = {key: array[index] for key, array in self._arrays.items()}
        out["is_first"][:, 0] = True
        return out

    # ------------------------------------------------------------------ disk

    def flush(self, root: Path, *, fps: float, source: dict[str, Any]) -> int:
        """Append the episodes completed since the last flush to the dataset at ``root`` (created the
        first time); returns how many were written."""
        episodes, self._completed = self._completed, []
        if not episodes:
            return 0
        with EpisodeWriter(root, fps=fps, frame_shape=self.frame_shape, action_space=self.action_space,
                           source=source, append=True) as writer:
            for episode in episodes:
                writer.add(episode)
        return len(episodes)

    def load(self, root: Path) -> int:
        """Refill the buffer from a dataset written by :meth:`flush` (a resumed run); returns the steps added
        (none when no episode was ever flushed)."""
        if not (Path(root) / META_NAME).is_file():
            return 0
        data = EpisodeDataset(root)
        before = self.total
        for index in range(len(data)):
            episode = data.episode(index)
            for row in episode_to_steps(episode):
                self.add(**row)
        self._completed = []  # already on disk
        return self.total - before


def steps_to_episode(steps: list[dict[str, Any]], discrete: bool, space: gym.Space) -> Episode:
    """One episode's steps (Dreamer layout, from its ``is_first`` to its ``is_last``) -> dataset rows:
    row t holds frame t, the action after it and that action's reward and end flags; the last row
    holds the final frame with action 0, reward 0 and no flags (the Gymnasium convention)."""
    frames = np.stack([s["frames"] for s in steps])
    zero = np.zeros((), np.int64) if discrete else np.zeros(space.shape, np.float32)
    actions = np.stack([*(s["prev_actions"] for s in steps[1:]), zero])
    rewards = np.asarray([*(s["rewards"] for s in steps[1:]), 0.0], np.float32)
    terminations = np.asarray([*(s["is_terminal"] for s in steps[1:]), False])
    truncations = np.asarray([*(s["is_last"] and not s["is_terminal"] for s in steps[1:]), False])
    return Episode(frames=frames, actions=actions.astype(np.int64 if discrete else np.float32), rewards=rewards,
                   terminations=terminations, truncations=truncations)


def episode_to_steps(episode: Episode) -> list[dict[str, Any]]:
    """Inverse of :func:`steps_to_episode`."""
    n = len(episode)
    steps = []
    for t in range(n):
        first = t == 0
        steps.append({"frame": episode.frames[t],
                      "prev_action": episode.actions[t - 1] if not first else np.zeros_like(episode.actions[0]),
                      "reward": 0.0 if first else float(episode.rewards[t - 1]),
                      "is_first": first,
                      "is_terminal": (not first) and bool(episode.terminations[t - 1]),
                      "is_last": t == n - 1})
    return steps
