"""The settings of ``nextworld serve``, apart from the server so that the command line reads them
without importing the web stack (FastAPI loads only when a server starts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from nextworld.errors import UserInputError


@dataclass
class ServeConfig:
    """Serve a world to play in the browser: keys drive it, prompts start it, sessions are recorded."""

    run: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN|NAME")]
    """A trained world's run directory or a shipped world's name (e.g. coinrun-tiny)."""
    host: str = "127.0.0.1"
    """Address to listen on; the default is reachable from this machine only."""
    port: int = 8000
    """TCP port to listen on (0: any free port)."""
    data: Path | None = None
    """An episode dataset whose frames the page offers as prompts (frames of the world's size)."""
    device: str = "cpu"
    """auto, cpu, cuda or cuda:N."""
    seed: int = 0
    """Seed of each session's sampling: the same prompt and actions replay the same frames."""
    max_sessions: int = 16
    """Most players at once; a further browser is asked to try again later."""
    idle_timeout: float = 600.0
    """Seconds without a message after which a session is closed and its memory released."""
    max_record_frames: int = 2000
    """Longest recording, in frames; recording stops there, with a message to the player."""
    atlas_steps: int = 4
    """Repetitions of each action in the action atlas drawn beside the world (0: no atlas)."""


def check_config(cfg: ServeConfig) -> None:
    """Refuse settings that cannot work, before anything is loaded."""
    if not 0 <= cfg.port <= 65535:
        raise UserInputError(f"--port {cfg.port}: must lie in 0..65535")
    for name, least in (("max_sessions", 1), ("max_record_frames", 1), ("atlas_steps", 0)):
        if getattr(cfg, name) < least:
            raise UserInputError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be at least {least}")
    if not cfg.idle_timeout > 0:
        raise UserInputError(f"--idle-timeout {cfg.idle_timeout}: must be more than 0 seconds")
