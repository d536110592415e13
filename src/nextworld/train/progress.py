"""The training progress bar: step/steps, clips per second, ETA and the latest loss."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    """A rich progress bar over optimizer steps; shows nothing when ``enabled`` is False."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"), disable=not enabled)
        self._task = self._progress.add_task("train", total=total, completed=start, speed="", loss="")

    def __enter__(self) -> "TrainProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, step: int, *, clips_per_second: float | None = None, loss: float | None = None) -> None:
        """Move to ``step``; refresh throughput and loss when given."""
        fields = {}
        if clips_per_second is not None:
            fields["speed"] = f"{clips_per_second:.1f} clips/s"
        if loss is not None:
            fields["loss"] = f"loss {loss:.4g}"
        self._progress.update(self._task, completed=step, **fields)
