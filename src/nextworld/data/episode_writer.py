"""Writing an episode dataset: episodes in, a complete dataset directory out (or nothing).

The format is described in ``nextworld.data.episode_format``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from nextworld.atomic_files import write_json_atomic
from nextworld.data.episode_format import META_NAME, SCHEMA_VERSION, Episode, space_to_json
from nextworld.errors import UserInputError


def check_output(root: str | Path, overwrite: bool) -> None:
    """Fail early, before any work, unless ``root`` may receive a new dataset.

    It may when it is absent or an empty directory, or, with ``overwrite``, when it holds a
    dataset (a ``meta.json``). ``overwrite`` never replaces anything else: pointed at a
    folder of videos or a home directory by mistake, it refuses.
    """
    root = Path(root)
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return
    if not overwrite:
        raise UserInputError(f"{root}: output exists and is not empty (pass --overwrite to replace a dataset there)")
    if not (root.is_dir() and (root / META_NAME).is_file()):
        raise UserInputError(f"{root}: exists and is not an episode dataset (no {META_NAME}); --overwrite only "
                             f"replaces datasets")


class _HashingWriter:
    """A binary file that hashes what is written to it (so no read-back is needed)."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")
        self.digest = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> None:
        self.file.write(data)
        self.digest.update(data)

    def close(self) -> str:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return self.digest.hexdigest()


def _write_npy(path: Path, parts: list[np.ndarray], dtype: np.dtype) -> dict[str, Any]:
    """Write the row-wise concatenation of ``parts`` as one .npy file, without joining them in memory."""
    rows = sum(len(p) for p in parts)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (rows, *parts[0].shape[1:])}
    out = _HashingWriter(path)
    np.lib.format.write_array_header_1_0(out, header)
    for part in parts:
        out.write(memoryview(np.ascontiguousarray(part, dtype=dtype)).cast("B"))
    digest = out.close()
    return {"bytes": path.stat().st_size, "sha256": digest}


class EpisodeWriter:
    """Write episodes into a new dataset directory, a shard at a time.

    Use as a context manager. Everything is written into a hidden staging directory beside
    ``root``; a clean exit renames it into place (replacing the old dataset only then, when
    ``overwrite``), and an exception removes it, leaving ``root`` as it was.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: float,
        frame_shape: tuple[int, int, int],
        action_space: gym.Space | None,
        source: dict[str, Any],
        labels: dict[str, tuple[tuple[int, ...], str]] | None = None,
        split: dict[str, Any] | None = None,
        shard_frames: int = 8192,
        overwrite: bool = False,
        append: bool = False,
    ) -> None:
        """
        Args:
            root: dataset directory; must be absent or empty unless ``overwrite``.
            fps: frames per second of the recording.
            frame_shape: (H, W, C) of every frame.
            action_space: the actions' Gymnasium space, or None for action-free data.
            source: free-form description of where the data came from (written to meta).
            labels: hidden labels, name -> (per-frame shape, numpy dtype name).
            split: which part of the source's episodes this dataset holds, e.g.
                ``{"by": "level", "range": [0, 10000]}`` or ``{"by": "seed", "range": [0, 200]}``.
            shard_frames: frames buffered before a shard is written.
            overwrite: replace an existing dataset at ``root`` once this one is complete.
            append: add episodes to the dataset at ``root`` (created when absent), which must have
                the same frame shape, action space and labels. New shards are written into it
                one at a time, and meta.json, which lists them, is replaced on close: a crash
                leaves the dataset as it was (unlisted shards are overwritten by the next append).
        """
        self.root = Path(root)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.action_space = action_space
        self.label_specs = dict(labels or {})
        self.shard_frames = shard_frames
        self._appending = append and (self.root / META_NAME).is_file()
        self._written: list[Path] = []
        if self._appending:
            self.staging = self.root
            self.meta = self._existing_meta()
            self._buffer: list[Episode] = []
            self._buffered_frames = 0
            self._closed = False
            return
        check_output(self.root, overwrite)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.root.parent / f".{self.root.name}.partial-{uuid.uuid4().hex[:8]}"
        (self.staging / "shards").mkdir(parents=True)
        self.meta: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "fps": float(fps),
            "frame_shape": list(self.frame_shape),
            "action_space": space_to_json(action_space),
            "labels": {k: {"shape": list(s), "dtype": d} for k, (s, d) in self.label_specs.items()},
            "source": source,
            "split": split,
            "num_episodes": 0,
            "num_frames": 0,
            "shards": [],
            "episodes": [],
        }
        self._buffer: list[Episode] = []
        self._buffered_frames = 0
        self._closed = False

    def _existing_meta(self) -> dict[str, Any]:
        """The meta.json of the dataset appended to, checked to hold episodes like the new ones."""
        path = self.root / META_NAME
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(f"{path}: cannot append, not readable JSON ({e})") from None
        wanted = {"schema_version": SCHEMA_VERSION, "frame_shape": list(self.frame_shape),
                  "action_space": space_to_json(self.action_space),
                  "labels": {k: {"shape": list(s), "dtype": d} for k, (s, d) in self.label_specs.items()}}
        for key, value in wanted.items():
            if not isinstance(meta, dict) or meta.get(key) != value:
                raise UserInputError(f"{path}: cannot append, its {key} is not that of the new episodes ({value})")
        return meta

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def num_frames(self) -> int:
        return self.meta["num_frames"] + self._buffered_frames

    @property
    def num_episodes(self) -> int:
        return self.meta["num_episodes"] + len(self._buffer)

    def add(self, episode: Episode) -> None:
        """Buffer one episode (validated now), writing a shard when the buffer is full."""
        self._validate(episode)
        self._buffer.append(episode)
        self._buffered_frames += len(episode)
        if self._buffered_frames >= self.shard_frames:
            self._write_shard()

    def _validate(self, ep: Episode) -> None:
        t = len(ep)
        if t == 0:
            raise ValueError("an episode needs at least one frame")
        if ep.frames.dtype != np.uint8 or tuple(ep.frames.shape[1:]) != self.frame_shape:
            raise ValueError(
                f"frames must be uint8 [T, {', '.join(map(str, self.frame_shape))}], "
                f"got {ep.frames.dtype} {list(ep.frames.shape)}"
            )
        if (self.action_space is None) != (ep.actions is None):
            raise ValueError("episodes must carry actions exactly when the dataset has an action space")
        for name, arr in (("actions", ep.actions), ("rewards", ep.rewards),
                          ("terminations", ep.terminations), ("truncations", ep.truncations)):
            if arr is not None and arr.shape[0] != t:
                raise ValueError(f"{name} has {arr.shape[0]} rows for {t} frames")
        if set(ep.labels) != set(self.label_specs):
            raise ValueError(f"episode labels {sorted(ep.labels)} differ from the dataset's {sorted(self.label_specs)}")
        for name, arr in ep.labels.items():
            shape, _ = self.label_specs[name]
            if tuple(arr.shape) != (t, *shape):
                raise ValueError(f"label {name!r} must be [{t}, {shape}], got {list(arr.shape)}")

    def _write_shard(self) -> None:
        """Write the buffered episodes as one shard directory of .npy files."""
        eps = self._buffer
        index = len(self.meta["shards"])
        name = f"{index:06d}"
        shard_dir = self.staging / "shards" / name
        if self._appending and shard_dir.exists():
            shutil.rmtree(shard_dir)  # left by a crashed append: meta.json never listed it
        shard_dir.mkdir(parents=True)
        self._written.append(shard_dir)
        columns: dict[str, tuple[list[np.ndarray], np.dtype]] = {"frames": ([e.frames for e in eps], np.dtype(np.uint8))}
        if self.action_space is not None:
            dtype = np.int64 if isinstance(self.action_space, gym.spaces.Discrete) else np.float32
            columns["actions"] = ([e.actions for e in eps], np.dtype(dtype))
        columns["rewards"] = ([np.zeros(len(e)) if e.rewards is None else e.rewards for e in eps],
                              np.dtype(np.float32))
        for key in ("terminations", "truncations"):
            columns[key] = ([np.zeros(len(e), bool) if getattr(e, key) is None else getattr(e, key) for e in eps],
                            np.dtype(bool))
        for label, (_, dtype) in self.label_specs.items():
            columns[f"label_{label}"] = ([e.labels[label] for e in eps], np.dtype(dtype))
        files = {key: _write_npy(shard_dir / f"{key}.npy", parts, dtype) for key, (parts, dtype) in columns.items()}

        start = 0
        for e in eps:
            self.meta["episodes"].append(
                {"shard": index, "start": start, "length": len(e), "level": e.level, "seed": e.seed})
            start += len(e)
        self.meta["shards"].append({"name": name, "num_frames": start, "files": files})
        self.meta["num_episodes"] += len(eps)
        self.meta["num_frames"] += start
        self._buffer, self._buffered_frames = [], 0

    def close(self) -> None:
        """Write what is buffered and meta.json, then move the dataset into place."""
        if self._closed:
            return
        if self._buffer:
            self._write_shard()
        write_json_atomic(self.staging / META_NAME, self.meta)
        if self._appending:
            self._closed = True
            return
        old = None
        if self.root.exists():
            old = self.root.parent / f".{self.root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.root, old)
        os.replace(self.staging, self.root)
        if old is not None:
            shutil.rmtree(old)
        self._closed = True

    def abort(self) -> None:
        """Throw away everything written; ``root`` stays as it was."""
        if self._appending:
            for shard_dir in self._written:
                shutil.rmtree(shard_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._closed = True
