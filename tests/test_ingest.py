"""Ingesting video files as action-free episodes; every video is made inside the test."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.sources.video import IngestConfig, ingest
from nextworld.errors import UserInputError

BLUE, RED = (0, 0, 200), (255, 0, 0)


def moving_block_frame(t: int, height: int = 96, width: int = 128) -> np.ndarray:
    """uint8 [H, W, 3]: a blue background and a red block 4 pixels further right each frame."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:] = BLUE
    frame[30:66, 4 * t:4 * t + 24] = RED
    return frame


def write_video(path: Path, frames: list[np.ndarray], fps: int, codec: str, pix_fmt: str) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moving_block_mp4(path: Path) -> Path:
    """30 frames of 96×128 at 30 fps (one second), H.264."""
    return write_video(path, [moving_block_frame(t) for t in range(30)], 30, "libx264", "yuv420p")


def numbered_frames_avi(path: Path, count: int, fps: int) -> Path:
    """Lossless (PNG codec) 32×32 frames whose grey level is 8 × the frame number."""
    frames = [np.full((32, 32, 3), 8 * t, np.uint8) for t in range(count)]
    return write_video(path, frames, fps, "png", "rgb24")


def quiet_config(paths: list[Path], out: Path, **changes) -> IngestConfig:
    return IngestConfig(paths=paths, out=out, progress=False, **changes)


def red_columns(frame: np.ndarray) -> np.ndarray:
    red = (frame[..., 0] > 150) & (frame[..., 2] < 100)
    return np.flatnonzero(red.any(axis=0))


def test_mp4_becomes_one_action_free_episode_resampled_and_resized(tmp_path):
    video = moving_block_mp4(tmp_path / "block.mp4")
    summary = ingest(quiet_config([video], tmp_path / "ds", fps=10))
    assert (summary.episodes, summary.frames, summary.skipped) == (1, 10, [])
    ds = EpisodeDataset(tmp_path / "ds")
    assert ds.action_space is None and ds.fps == 10
    episode = ds.episode(0)
    assert episode.actions is None
    assert episode.frames.shape == (10, 64, 64, 3) and episode.frames.dtype == np.uint8
    corner = episode.frames[:, 2, 2].astype(int)  # background, every frame
    assert (corner[:, 2] > 150).all() and (corner[:, 0] < 60).all()
    # frame k is source frame 3k: the block (12 source pixels a step, cropped and scaled by 2/3) moves right
    lefts = [red_columns(frame)[0] if red_columns(frame).size else -1 for frame in episode.frames]
    assert lefts[0] == 0
    assert all(b > a for a, b in zip(lefts[5:], lefts[6:]))  # once fully inside the centre crop
    assert lefts[-1] == pytest.approx((4 * 27 - 16) * 64 / 96, abs=2)


def test_resampling_takes_the_latest_frame_at_or_before_each_target_time(tmp_path):
    thirty = numbered_frames_avi(tmp_path / "thirty.avi", 30, fps=30)
    five = numbered_frames_avi(tmp_path / "five.avi", 6, fps=5)
    ingest(quiet_config([thirty, five], tmp_path / "ds", fps=10, size=32))
    ds = EpisodeDataset(tmp_path / "ds")
    grey_levels = [ds.episode(i).frames[:, 16, 16, 0].tolist() for i in range(2)]
    assert grey_levels[0] == [0, 24, 48, 72, 96, 120, 144, 168, 192, 216]  # every third frame
    assert grey_levels[1] == [0, 0, 8, 8, 16, 16, 24, 24, 32, 32, 40]  # each frame twice, up to t = 1 s


def test_pad_keeps_the_whole_frame_and_crop_fills_it(tmp_path):
    video = moving_block_mp4(tmp_path / "block.mp4")
    ingest(quiet_config([video], tmp_path / "pad", resize="pad"))
    ingest(quiet_config([video], tmp_path / "crop", resize="crop"))
    padded = EpisodeDataset(tmp_path / "pad").episode(0).frames[0].astype(int)
    cropped = EpisodeDataset(tmp_path / "crop").episode(0).frames[0].astype(int)
    # 96×128 padded to 128×128: 16 black rows above and below, 8 after scaling to 64
    assert padded[:7].max() < 30 and padded[-7:].max() < 30
    assert padded[32, 60, 2] > 150  # background inside the picture
    assert cropped[:7, :, 2].min() > 150


def test_gif_is_ingested_and_max_frames_caps_an_episode(tmp_path):
    gif = write_video(tmp_path / "block.gif", [moving_block_frame(t) for t in range(10)], 10, "gif", "rgb8")
    summary = ingest(quiet_config([gif], tmp_path / "ds", fps=10, max_frames=4))
    assert (summary.episodes, summary.frames) == (1, 4)
    frames = EpisodeDataset(tmp_path / "ds").episode(0).frames
    assert frames.shape == (4, 64, 64, 3)
    assert frames[0, 2, 2, 2] > 150 and frames[0, 2, 2, 0] < 60


def test_folder_is_searched_recursively_in_sorted_order_and_corrupt_files_are_skipped(tmp_path):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    moving_block_mp4(folder / "sub" / "b.mp4")
    numbered_frames_avi(folder / "a.avi", 10, fps=10)
    corrupt = folder / "broken.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "notes.txt").write_text("not a video")
    summary = ingest(quiet_config([folder], tmp_path / "ds"))
    assert summary.episodes == 2
    assert [path for path, _ in summary.skipped] == [corrupt]
    assert summary.skipped[0][1]  # a reason is given
    source = EpisodeDataset(tmp_path / "ds").meta["source"]
    assert source["files"] == [str(folder / "a.avi"), str(folder / "sub" / "b.mp4")]


def test_no_decodable_video_is_a_user_error_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    out = tmp_path / "never"
    with pytest.raises(UserInputError, match="no video could be decoded"):
        ingest(quiet_config([bad], out))
    assert not out.exists()


def test_missing_path_is_a_user_error_naming_it(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(UserInputError, match=f"{missing}: no such file or folder"):
        ingest(quiet_config([missing], tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_output_overlapping_an_input_is_refused(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    moving_block_mp4(videos / "a.mp4")
    for out in (videos, videos / "dataset", tmp_path):
        with pytest.raises(UserInputError, match="overlaps the input"):
            ingest(IngestConfig(paths=[videos], out=out, overwrite=True, progress=False))
    assert (videos / "a.mp4").is_file()
