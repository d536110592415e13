"""Reading an episode dataset: memory-mapped, checked, never loaded whole.

The format is described in ``nextworld.data.episode_format``; datasets are written by
``nextworld.data.episode_writer``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nextworld.data.episode_format import META_NAME, SCHEMA_VERSION, Episode, sha256_file, space_from_json
from nextworld.errors import UserInputError


@dataclass(frozen=True)
class EpisodeRef:
    """Where one episode lives: shard index, first row, number of frames, level/seed."""

    index: int
    shard: int
    start: int
    length: int
    level: int | None
    seed: int | None


class EpisodeDataset:
    """Read-only view of a dataset directory; arrays are memory-mapped, never loaded whole.

    Opening checks ``meta.json`` and every shard file's presence, size and .npy header
    (catching missing, truncated and mis-shaped shards at once). Checksums are verified the first time this
    object touches a shard (``verify="lazy"``, the default), for all shards up front
    (``"full"``), or never (``"none"``).
    """

    def __init__(self, root: str | Path, verify: str = "lazy") -> None:
        if verify not in ("lazy", "full", "none"):
            raise ValueError(f"verify must be lazy, full or none, not {verify!r}")
        self.root = Path(root)
        meta_path = self.root / META_NAME
        if not self.root.is_dir():
            raise UserInputError(f"{self.root}: dataset directory does not exist")
        if not meta_path.is_file():
            raise UserInputError(f"{meta_path}: missing; {self.root} is not a nextworld episode dataset")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(f"{meta_path}: not valid JSON ({e})") from None
        if not isinstance(self.meta, dict) or self.meta.get("schema_version") != SCHEMA_VERSION:
            version = self.meta.get("schema_version") if isinstance(self.meta, dict) else None
            raise UserInputError(f"{meta_path}: schema version {version!r}, this nextworld reads {SCHEMA_VERSION}")
        self.verify = verify
        try:
            self.frame_shape: tuple[int, int, int] = tuple(int(v) for v in self.meta["frame_shape"])
            self.action_space = space_from_json(self.meta["action_space"])
            self.episodes = [
                EpisodeRef(i, int(e["shard"]), int(e["start"]), int(e["length"]), e.get("level"), e.get("seed"))
                for i, e in enumerate(self.meta["episodes"])
            ]
            shards = [(str(sh["name"]), int(sh["num_frames"]), dict(sh["files"])) for sh in self.meta["shards"]]
            for _, _, files in shards:
                for info in files.values():
                    int(info["bytes"]), str(info["sha256"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"{meta_path}: malformed ({type(e).__name__}: {e})") from None
        if len(self.frame_shape) != 3 or any(e.shard >= len(shards) for e in self.episodes):
            raise UserInputError(f"{meta_path}: malformed (frame_shape must be [H, W, C]; episodes must name listed shards)")
        self._verified: set[int] = set()
        self._arrays: dict[int, dict[str, np.ndarray]] = {}
        for i, shard in enumerate(self.meta["shards"]):
            self._check_files(i, shard)
        if verify == "full":
            for i in range(len(self.meta["shards"])):
                self._verify_checksums(i)

    # -- properties ------------------------------------------------------------
    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def label_names(self) -> list[str]:
        return list(self.meta.get("labels", {}))

    def __len__(self) -> int:
        return len(self.episodes)

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in each DataLoader worker rather than pickled.
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    # -- integrity -------------------------------------------------------------
    def _shard_dir(self, i: int) -> Path:
        return self.root / "shards" / self.meta["shards"][i]["name"]

    def _check_files(self, i: int, shard: dict[str, Any]) -> None:
        """Each listed file exists with its recorded size and an .npy header that fits meta.json.

        Reads only the headers (a few hundred bytes a file), so a missing, truncated or
        mis-shaped shard is reported at open, naming the file, without reading the data.
        """
        d = self._shard_dir(i)
        if not d.is_dir():
            raise UserInputError(f"{d}: shard listed in meta.json is missing")
        rows = shard["num_frames"]
        for key, info in shard["files"].items():
            path = d / f"{key}.npy"
            if not path.is_file():
                raise UserInputError(f"{path}: shard file listed in meta.json is missing")
            size = path.stat().st_size
            if size != info["bytes"]:
                raise UserInputError(f"{path}: truncated or altered shard ({size} bytes, meta.json says {info['bytes']})")
            try:
                with open(path, "rb") as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
            except ValueError as e:
                raise UserInputError(f"{path}: not a readable .npy array ({e})") from None
            if shape[:1] != (rows,):
                raise UserInputError(f"{path}: holds {shape[0] if shape else 0} rows, meta.json says {rows}")
            if key == "frames" and (tuple(shape[1:]) != self.frame_shape or dtype != np.uint8):
                raise UserInputError(f"{path}: frames are {dtype} {list(shape[1:])}, "
                                     f"meta.json says uint8 {list(self.frame_shape)}")

    def _verify_checksums(self, i: int) -> None:
        if i in self._verified:
            return
        for key, info in self.meta["shards"][i]["files"].items():
            path = self._shard_dir(i) / f"{key}.npy"
            if sha256_file(path) != info["sha256"]:
                raise UserInputError(f"{path}: corrupt shard (sha256 does not match meta.json)")
        self._verified.add(i)

    def _shard(self, i: int) -> dict[str, np.ndarray]:
        arrays = self._arrays.get(i)
        if arrays is None:
            if self.verify != "none":
                self._verify_checksums(i)
            arrays = {}
            for key in self.meta["shards"][i]["files"]:
                path = self._shard_dir(i) / f"{key}.npy"
                try:
                    arrays[key] = np.load(path, mmap_mode="r", allow_pickle=False)
                except ValueError as e:
                    raise UserInputError(f"{path}: not a readable .npy array ({e})") from None
            self._arrays[i] = arrays
        return arrays

    # -- reading ---------------------------------------------------------------
    def read(self, episode: int, start: int = 0, stop: int | None = None, step: int = 1,
             keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Rows ``start:stop:step`` of one episode as in-memory arrays.

        Returns a dict with ``frames`` uint8 [T, H, W, C], and, where present, ``actions``,
        ``rewards``, ``terminations``, ``truncations`` and ``label_<name>`` ([T, ...] each).
        """
        ref = self.episodes[episode]
        stop = ref.length if stop is None else stop
        if not (0 <= start <= stop <= ref.length):
            raise IndexError(f"rows {start}:{stop} outside episode {episode} of length {ref.length}")
        arrays = self._shard(ref.shard)
        wanted = arrays.keys() if keys is None else [k for k in keys if k in arrays]
        lo, hi = ref.start + start, ref.start + stop
        return {k: np.array(arrays[k][lo:hi:step]) for k in wanted}

    def episode(self, index: int) -> Episode:
        """One whole episode, loaded into memory."""
        ref = self.episodes[index]
        rows = self.read(index)
        return Episode(
            frames=rows["frames"], actions=rows.get("actions"), rewards=rows.get("rewards"),
            terminations=rows.get("terminations"), truncations=rows.get("truncations"),
            labels={k[len("label_"):]: v for k, v in rows.items() if k.startswith("label_")},
            level=ref.level, seed=ref.seed)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


def split_episodes(ds: EpisodeDataset, *, levels: tuple[int, int] | None = None,
                   seeds: tuple[int, int] | None = None) -> list[int]:
    """Indices of the episodes whose level (or seed) lies in ``[lo, hi)``.

    Episodes without a recorded level/seed are excluded whenever a range is given.
    """
    out = []
    for ref in ds.episodes:
        if levels is not None and (ref.level is None or not levels[0] <= ref.level < levels[1]):
            continue
        if seeds is not None and (ref.seed is None or not seeds[0] <= ref.seed < seeds[1]):
            continue
        out.append(ref.index)
    return out
