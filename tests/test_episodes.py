"""Episode datasets: round trips, integrity checks, splits."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from conftest import make_dataset
from nextworld.data.episode_format import Episode, parse_range, space_from_json, space_to_json
from nextworld.data.episode_writer import EpisodeWriter
from nextworld.data.episodes import EpisodeDataset, split_episodes
from nextworld.errors import UserInputError


def test_round_trip_preserves_every_array(tmp_path: Path) -> None:
    lengths = [20, 5, 33, 17, 40, 9]
    root = make_dataset(tmp_path / "ds", lengths, shard_frames=30)
    ds = EpisodeDataset(root, verify="full")
    assert len(ds) == len(lengths) and ds.num_frames == sum(lengths)
    assert len(ds.meta["shards"]) > 1, "small shard size should give several shards"
    assert ds.label_names == ["position"]
    for i, ep in enumerate(ds):
        assert len(ep) == lengths[i]
        assert ep.frames.dtype == np.uint8 and ep.frames.shape[1:] == (16, 16, 3)
        assert (ep.frames[:, 0, 0, 1] == np.arange(lengths[i]) % 256).all(), "rows out of order"
        assert (ep.frames[:, :, :, 2] == i).all(), "episode read from the wrong place"
        assert ep.actions.dtype == np.int64 and ep.labels["position"].shape == (lengths[i], 2)
        assert ep.terminations[-1] and not ep.terminations[:-1].any()
        assert ep.level == i and ep.seed == 1000 + i


def test_continuous_actions_and_action_free(tmp_path: Path) -> None:
    box = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    with EpisodeWriter(tmp_path / "c", fps=5, frame_shape=(8, 8, 3), action_space=box, source={}) as w:
        w.add(Episode(frames=np.zeros((4, 8, 8, 3), np.uint8), actions=np.ones((4, 2), np.float32)))
    ds = EpisodeDataset(tmp_path / "c")
    assert isinstance(ds.action_space, gym.spaces.Box) and ds.action_space.shape == (2,)
    assert ds.read(0)["actions"].shape == (4, 2)
    with EpisodeWriter(tmp_path / "v", fps=5, frame_shape=(8, 8, 3), action_space=None, source={}) as w:
        w.add(Episode(frames=np.zeros((3, 8, 8, 3), np.uint8)))
    ds = EpisodeDataset(tmp_path / "v")
    assert ds.action_space is None and "actions" not in ds.read(0)


def test_space_json_round_trip() -> None:
    for space in (gym.spaces.Discrete(15), gym.spaces.Box(-1, 1, (3,), np.float32), None):
        back = space_from_json(json.loads(json.dumps(space_to_json(space))))
        assert back == space


def test_writer_rejects_wrong_frame_shape(tmp_path: Path) -> None:
    with EpisodeWriter(tmp_path / "d", fps=5, frame_shape=(8, 8, 3), action_space=None, source={}) as w:
        with pytest.raises(ValueError, match="frames must be uint8"):
            w.add(Episode(frames=np.zeros((3, 9, 8, 3), np.uint8)))


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with pytest.raises(RuntimeError):
        with EpisodeWriter(root, fps=5, frame_shape=(8, 8, 3), action_space=None, source={}) as w:
            w.add(Episode(frames=np.zeros((3, 8, 8, 3), np.uint8)))
            raise RuntimeError("collector crashed")
    assert not root.exists()


def test_refuses_to_overwrite_without_flag(tiny_dataset: Path) -> None:
    with pytest.raises(UserInputError, match="exists and is not empty"):
        EpisodeWriter(tiny_dataset, fps=5, frame_shape=(8, 8, 3), action_space=None, source={})


def _first_shard_file(root: Path, key: str) -> Path:
    return root / "shards" / "000000" / f"{key}.npy"


def test_corrupt_shard_detected(tiny_dataset: Path) -> None:
    path = _first_shard_file(tiny_dataset, "frames")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    ds = EpisodeDataset(tiny_dataset)  # sizes still match: opening succeeds
    with pytest.raises(UserInputError, match=r"frames\.npy: corrupt shard"):
        ds.read(0)
    with pytest.raises(UserInputError, match="corrupt shard"):
        EpisodeDataset(tiny_dataset, verify="full")


def test_truncated_and_missing_shards_detected(tiny_dataset: Path) -> None:
    path = _first_shard_file(tiny_dataset, "rewards")
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(UserInputError, match=r"rewards\.npy: truncated"):
        EpisodeDataset(tiny_dataset)
    path.unlink()
    with pytest.raises(UserInputError, match=r"rewards\.npy: shard file listed in meta\.json is missing"):
        EpisodeDataset(tiny_dataset)


def test_frame_size_mismatch_detected(tiny_dataset: Path) -> None:
    meta_path = tiny_dataset / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["frame_shape"] = [32, 32, 3]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserInputError, match="frames.npy: frames are uint8 \\[16, 16, 3\\], meta.json says uint8 \\[32, 32, 3\\]"):
        EpisodeDataset(tiny_dataset, verify="none")  # caught at open, from the .npy header alone


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        EpisodeDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="not a nextworld episode dataset"):
        EpisodeDataset(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{not json")
    with pytest.raises(UserInputError, match="not valid JSON"):
        EpisodeDataset(tmp_path / "bad")


def test_splits_by_level_and_seed(tiny_dataset: Path) -> None:
    ds = EpisodeDataset(tiny_dataset)
    assert split_episodes(ds, levels=(2, 4)) == [2, 3]
    assert split_episodes(ds, seeds=(1004, 2000)) == [4, 5]
    assert split_episodes(ds) == list(range(6))


def test_parse_range() -> None:
    assert parse_range("0:10000") == (0, 10000)
    for bad in ("5", "a:b", "10:5", "-1:3"):
        with pytest.raises(UserInputError, match="expected"):
            parse_range(bad, "--levels")


def test_overwrite_keeps_old_dataset_until_new_one_is_complete(tiny_dataset: Path) -> None:
    with pytest.raises(RuntimeError):
        with EpisodeWriter(tiny_dataset, fps=5, frame_shape=(8, 8, 3), action_space=None, source={},
                           overwrite=True) as w:
            w.add(Episode(frames=np.zeros((3, 8, 8, 3), np.uint8)))
            raise RuntimeError("collector crashed")
    assert len(EpisodeDataset(tiny_dataset, verify="full")) == 6, "old dataset must survive a failed overwrite"
    with EpisodeWriter(tiny_dataset, fps=5, frame_shape=(8, 8, 3), action_space=None, source={},
                       overwrite=True) as w:
        w.add(Episode(frames=np.zeros((3, 8, 8, 3), np.uint8)))
    assert len(EpisodeDataset(tiny_dataset, verify="full")) == 1
    assert [p.name for p in tiny_dataset.parent.iterdir()] == [tiny_dataset.name], "staging dirs left behind"


def test_overwrite_refuses_what_is_not_a_dataset(tmp_path: Path) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.txt").write_text("years of work")
    with pytest.raises(UserInputError, match="not an episode dataset"):
        EpisodeWriter(precious, fps=5, frame_shape=(8, 8, 3), action_space=None, source={}, overwrite=True)
    assert (precious / "chapter1.txt").read_text() == "years of work"


@pytest.mark.parametrize("corrupt", [
    lambda meta: [meta],  # valid JSON, wrong kind
    lambda meta: {k: v for k, v in meta.items() if k != "episodes"},  # a key missing
    lambda meta: {**meta, "frame_shape": [16, 16]},
    lambda meta: {**meta, "action_space": {"type": "tuple"}},
])
def test_malformed_meta_is_a_user_error(tiny_dataset: Path, corrupt) -> None:
    meta_path = tiny_dataset / "meta.json"
    meta_path.write_text(json.dumps(corrupt(json.loads(meta_path.read_text()))))
    with pytest.raises(UserInputError, match="meta.json: (malformed|schema version)"):
        EpisodeDataset(tiny_dataset)


def test_shard_with_wrong_row_count_is_caught_at_open(tiny_dataset: Path) -> None:
    path = _first_shard_file(tiny_dataset, "rewards")
    np.save(path, np.zeros(3, np.float32))  # a valid .npy, but not the shard's rows
    meta_path = tiny_dataset / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["shards"][0]["files"]["rewards"]["bytes"] = path.stat().st_size  # sizes agree, rows do not
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserInputError, match=r"rewards\.npy: holds 3 rows, meta.json says"):
        EpisodeDataset(tiny_dataset, verify="none")
