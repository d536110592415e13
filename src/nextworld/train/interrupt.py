"""Ctrl-C and SIGTERM as a request to stop at the next step boundary."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopSignals:
    """While active, the first SIGINT or SIGTERM sets ``requested``.

    The engine polls ``requested`` after each optimizer step, then checkpoints and
    returns. With ``second_sigint_aborts``, a second Ctrl-C raises KeyboardInterrupt at
    once (the last complete checkpoint stays on disk); a launcher that forwards the
    terminal's Ctrl-C (torchrun) delivers it twice, so there it is off. Handlers are
    installed only in the main thread (Python allows no other) and the previous ones are
    restored on exit.
    """

    def __init__(self, second_sigint_aborts: bool = True) -> None:
        self.second_sigint_aborts = second_sigint_aborts
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and self.second_sigint_aborts and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


def ignore_sigint_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C reaches the whole process group, and a worker
    that died of it would break the batch the main process is still finishing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
