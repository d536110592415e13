"""Metric records of a run: ``metrics.jsonl`` and TensorBoard events, plus the window they average."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from nextworld.atomic_files import write_atomic

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tb"


class MetricsWindow:
    """Sums of per-step metrics since the last record, without forcing a GPU sync per step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Any] = {}
        self.steps = 0
        self.started = time.perf_counter()

    def add(self, metrics: dict[str, Any]) -> None:
        """Add one step's metrics (floats or 0-d tensors, possibly on the GPU)."""
        for key, value in metrics.items():
            value = value.detach().float() if torch.is_tensor(value) else float(value)
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {key: float(total) / self.steps for key, total in self.sums.items()}

    def seconds(self) -> float:
        return time.perf_counter() - self.started


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` and TensorBoard events in ``run_dir/tb``.

    On resume from step s, records with step > s (written after that checkpoint by the
    run that was interrupted) are dropped first, so the log reads as one run. Disabled
    (every method a no-op) on all but the main process.
    """

    def __init__(self, run_dir: Path, *, resumed_step: int | None, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            return
        # Imported here: tensorboard is slow to import and only the main process needs it.
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / METRICS_NAME
        if resumed_step is not None and path.exists():
            _truncate_after(path, resumed_step)
        self._file = open(path, "a")
        purge = None if resumed_step is None else resumed_step + 1
        self._tb = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        self._file.flush()
        for key, value in metrics.items():
            self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` in order (a line a kill cut short is skipped; none if no file)."""
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _truncate_after(path: Path, step: int) -> None:
    """Keep the records with step <= ``step`` (and drop a line a kill cut short)."""
    kept = [json.dumps(r) + "\n" for r in read_records(path) if r.get("step", 0) <= step]
    write_atomic(path, lambda tmp: tmp.write_text("".join(kept)))
