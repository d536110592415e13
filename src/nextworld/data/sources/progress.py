"""The progress bar every source shows while it writes a dataset."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class EpisodeProgress:
    """A rich progress bar of episodes written and frames per second; silent when disabled."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[frames_per_second]:,.0f} frames/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not enabled)
        self._task = self._progress.add_task(description, total=total, frames_per_second=0.0)
        self._start = time.perf_counter()
        self._frames = 0

    def __enter__(self) -> "EpisodeProgress":
        self._progress.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._progress.stop()

    def advance(self, frames: int) -> None:
        """Count one more episode of ``frames`` frames."""
        self._frames += frames
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._progress.update(self._task, advance=1, frames_per_second=self._frames / elapsed)
