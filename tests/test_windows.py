"""Clip windows never cross an episode boundary; the batch order is resumable and rank-aware."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.windows import ClipDataset, ResumableBatchSampler, WindowSpec, window_index
from nextworld.errors import UserInputError
from conftest import make_dataset


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=12),
    length=st.integers(1, 12),
    stride=st.integers(1, 7),
    frame_skip=st.integers(1, 4),
)
def test_windows_never_cross_episode_boundaries(lengths: list[int], length: int, stride: int,
                                                frame_skip: int) -> None:
    spec = WindowSpec(length, stride, frame_skip)
    index = window_index(lengths, spec)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for episode, start in index:
        rows = start + np.arange(length) * frame_skip
        assert rows[0] >= 0 and rows[-1] < lengths[episode]
        # In dataset-global row numbers, every row lies inside this episode's range.
        global_rows = offsets[episode] + rows
        assert (global_rows >= offsets[episode]).all() and (global_rows < offsets[episode + 1]).all()
    # ...and every valid start is present exactly once.
    expected = sum(max(0, (n - spec.span) // stride + 1) for n in lengths)
    assert len(index) == expected == len({(int(e), int(s)) for e, s in index})


_STAMPED: dict[str, EpisodeDataset] = {}


def _stamped_dataset(tmp_path_factory) -> EpisodeDataset:
    """Episodes of lengths 1..40 (several shards) whose pixels say which episode and row they are."""
    if "ds" not in _STAMPED:
        root = make_dataset(tmp_path_factory.mktemp("stamped") / "ds", [1, 2, 3, 5, 8, 13, 21, 34, 40, 7, 1, 16],
                            shard_frames=50)
        _STAMPED["ds"] = EpisodeDataset(root)
    return _STAMPED["ds"]


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 10), stride=st.integers(1, 5), frame_skip=st.integers(1, 4), data=st.data())
def test_clips_read_from_disk_stay_inside_one_episode(tmp_path_factory, length: int, stride: int,
                                                      frame_skip: int, data) -> None:
    ds = _stamped_dataset(tmp_path_factory)
    spec = WindowSpec(length, stride, frame_skip)
    if not any(e.length >= spec.span for e in ds.episodes):
        return
    clips = ClipDataset(ds, spec)
    i = data.draw(st.integers(0, len(clips) - 1))
    frames = clips[i]["frames"].numpy()
    episode_ids = frames[:, 1, 1, 2]  # channel 2 holds the episode index everywhere
    rows = frames[:, 0, 0, 1].astype(int)  # pixel (0, 0, 1) holds the row within the episode
    assert (episode_ids == episode_ids[0]).all(), "a clip mixed frames of two episodes"
    assert (np.diff(rows) == frame_skip).all() and rows[-1] < ds.episodes[int(episode_ids[0])].length


def test_clip_reads_the_right_rows(tiny_dataset: Path) -> None:
    ds = EpisodeDataset(tiny_dataset)
    clips = ClipDataset(ds, WindowSpec(length=4, stride=3, frame_skip=2))
    for i in range(len(clips)):
        episode, start = clips.index[i]
        clip = clips[i]
        assert clip["frames"].shape == (4, 16, 16, 3)
        # the synthetic data stamps the episode in channel 2 and the row in pixel (0, 0, 1)
        assert (clip["frames"][..., 2] == episode).all()
        assert clip["frames"][:, 0, 0, 1].tolist() == [start + 2 * k for k in range(4)]
        full = ds.read(int(episode))
        assert clip["actions"].tolist() == full["actions"][start:start + 8:2].tolist()
        expected = [full["rewards"][start + 2 * k:start + 2 * k + 2].sum() for k in range(4)]  # cut at episode end
        assert np.allclose(clip["rewards"].numpy(), expected)


def test_split_restricts_clips(tiny_dataset: Path) -> None:
    ds = EpisodeDataset(tiny_dataset)
    clips = ClipDataset(ds, WindowSpec(length=4), episodes=[2, 4])
    assert set(clips.index[:, 0].tolist()) == {2, 4}


def test_too_short_for_window_is_a_user_error(tiny_dataset: Path) -> None:
    with pytest.raises(UserInputError, match="no episode has enough frames for a 64-frame window"):
        ClipDataset(EpisodeDataset(tiny_dataset), WindowSpec(length=64))


def test_sampler_resumes_and_shards_across_ranks() -> None:
    full = ResumableBatchSampler(50, 8, seed=3)
    it = iter(full)
    first = [next(it) for _ in range(15)]  # crosses an epoch boundary (6 batches per epoch)
    resumed = iter(ResumableBatchSampler(50, 8, seed=3, start_step=9))
    assert [next(resumed) for _ in range(6)] == first[9:]
    for step in (0, 7):
        parts = [ResumableBatchSampler(50, 8, seed=3, rank=r, world_size=2).batch_indices(step) for r in range(2)]
        assert sorted(parts[0] + parts[1]) == sorted(first[step])
    epoch0 = sum(first[:6], [])
    assert len(set(epoch0)) == 48, "an epoch draws each clip at most once"
