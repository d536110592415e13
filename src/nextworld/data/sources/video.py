"""Ingest video files (mp4, webm, avi, gif, mkv, mov) as an action-free episode dataset.

Each file becomes one episode with no actions (``action_space`` None), decoded with PyAV,
resampled to a fixed frame rate by timestamps and resized to square frames. Files PyAV
cannot decode are skipped and reported, not fatal; if none decodes, nothing is written.

Resampling: target frame ``k`` (k = 0, 1, ...) is the latest decoded frame whose timestamp
is at or before ``k / fps`` seconds after the file's first frame, for every target up to the
last frame's timestamp. Timestamps are compared as exact fractions (``pts * time_base``), so
a 30 fps file resampled to 10 fps keeps exactly every third frame.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

import av
import tyro
import numpy as np

from nextworld.data.episode_format import Episode
from nextworld.data.episode_writer import EpisodeWriter, check_output
from nextworld.data.frames import fit_square
from nextworld.data.sources.progress import EpisodeProgress
from nextworld.errors import UserInputError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".gif", ".mkv", ".mov")


@dataclass
class IngestConfig:
    """Turn video files into an action-free episode dataset, one episode per file."""

    paths: Annotated[list[Path], tyro.conf.Positional]
    """Video files, or folders searched recursively for mp4, webm, avi, gif, mkv and mov files."""
    out: Path
    """Dataset directory to create."""
    size: int = 64
    """Side of the square output frames in pixels."""
    fps: float = 10.0
    """Frame rate of the dataset; videos are resampled to it by timestamps."""
    resize: Literal["crop", "pad"] = "crop"
    """How a frame becomes square: ``crop`` its centre, or ``pad`` it with black, then resize."""
    max_frames: int | None = None
    """Keep at most this many frames of each video (from its start); None keeps all."""
    overwrite: bool = False
    """Replace an existing dataset at ``out``."""
    progress: bool = True
    """Show a progress bar (videos ingested, frames per second) on stderr."""


@dataclass
class IngestSummary:
    """What an ingest wrote and what it skipped."""

    out: Path
    """The dataset directory."""
    episodes: int
    """Episodes written, one per decoded video."""
    frames: int
    """Frames written, all episodes together."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Files that were not ingested, each with the reason."""


def find_videos(paths: list[Path]) -> list[Path]:
    """The video files named by ``paths``: files as given, folders searched recursively.

    Folder contents are sorted, so the episode order is the same on every machine; a file
    reached twice is listed once.
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UserInputError(f"{path}: no such file or folder")
        if path.is_dir():
            videos = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not videos:
                raise UserInputError(f"{path}: folder holds no {', '.join(VIDEO_EXTENSIONS)} files")
            found.extend(videos)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


class UndecodableVideo(Exception):
    """A video file that gives no frames; the message says why."""


def decode_resampled(path: Path, fps: float, size: int, mode: Literal["crop", "pad"],
                     max_frames: int | None = None) -> np.ndarray:
    """Decode one video, resampled to ``fps`` (see the module docstring) and made square.

    Raises UndecodableVideo when PyAV cannot read the file, or it has no video stream, no
    frames or frames without timestamps.

    Returns:
        uint8 [T, size, size, 3].
    """
    try:
        return _decode_resampled(path, fps, size, mode, max_frames)
    except av.FFmpegError as e:
        raise UndecodableVideo(f"PyAV cannot decode it: {e.strerror}") from e


def _decode_resampled(path: Path, fps: float, size: int, mode: Literal["crop", "pad"],
                      max_frames: int | None) -> np.ndarray:
    period = 1 / Fraction(fps).limit_denominator(1_000_000)  # seconds between target frames
    limit = math.inf if max_frames is None else max_frames
    frames: list[np.ndarray] = []  # each uint8 [size, size, 3]
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise UndecodableVideo("it has no video stream")
        stream = container.streams.video[0]
        if stream.time_base is None:
            raise UndecodableVideo("its video stream has no time base, so frames cannot be timed")
        stream.thread_type = "AUTO"
        first_pts: int | None = None
        latest: av.VideoFrame | None = None
        latest_square: np.ndarray | None = None  # ``latest`` made square, kept while it repeats
        target = Fraction(0)  # time of the next output frame, from the first decoded frame
        elapsed = Fraction(0)

        def emit_latest() -> None:
            nonlocal latest_square, target
            if latest_square is None:
                latest_square = fit_square(latest.to_image(), size, mode)
            frames.append(latest_square)
            target += period

        for decoded in container.decode(stream):
            if decoded.pts is None:
                raise UndecodableVideo("its frames carry no timestamps")
            if first_pts is None:
                first_pts = decoded.pts
            elapsed = (decoded.pts - first_pts) * stream.time_base
            while latest is not None and target < elapsed and len(frames) < limit:
                emit_latest()  # targets before this frame's time take the one before it
            if len(frames) >= limit:
                break
            latest, latest_square = decoded, None
        if latest is None:
            raise UndecodableVideo("it holds no frames")
        while target <= elapsed and len(frames) < limit:
            emit_latest()  # targets up to the last frame's time take the last frame
    return np.stack(frames)


def ingest(cfg: IngestConfig) -> IngestSummary:
    """Write every decodable video named by ``cfg.paths`` as one action-free episode.

    The output directory is created only once a first video has decoded, so bad inputs leave
    nothing behind; if no video decodes, UserInputError lists why each was skipped.
    """
    if cfg.size < 1:
        raise UserInputError(f"size {cfg.size}: must be at least 1")
    if cfg.fps <= 0:
        raise UserInputError(f"fps {cfg.fps}: must be positive")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise UserInputError(f"max_frames {cfg.max_frames}: must be at least 1")
    out = cfg.out.resolve()
    for path in cfg.paths:
        source = path.resolve()
        if out == source or source in out.parents or out in source.parents:
            raise UserInputError(f"{cfg.out}: the output overlaps the input {path}; choose an --out outside it")
    check_output(cfg.out, cfg.overwrite)
    videos = find_videos(cfg.paths)
    skipped: list[tuple[Path, str]] = []
    ingested: list[str] = []  # grows with the dataset; meta.json lists the files in episode order
    source = {"kind": "video", "files": ingested, "fps": cfg.fps, "size": cfg.size, "resize": cfg.resize,
              "max_frames": cfg.max_frames}
    writer: EpisodeWriter | None = None
    with contextlib.ExitStack() as opened, EpisodeProgress(len(videos), "videos", cfg.progress) as progress:
        for path in videos:
            try:
                frames = decode_resampled(path, cfg.fps, cfg.size, cfg.resize, cfg.max_frames)
            except UndecodableVideo as e:
                skipped.append((path, str(e)))
                progress.advance(0)
                continue
            if writer is None:
                writer = opened.enter_context(EpisodeWriter(
                    cfg.out, fps=cfg.fps, frame_shape=(cfg.size, cfg.size, 3), action_space=None,
                    source=source, overwrite=cfg.overwrite))
            ingested.append(str(path))
            writer.add(Episode(frames=frames))
            progress.advance(len(frames))
    if writer is None:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in skipped)
        raise UserInputError(f"no video could be decoded ({reasons})")
    return IngestSummary(out=cfg.out, episodes=writer.num_episodes, frames=writer.num_frames, skipped=skipped)
