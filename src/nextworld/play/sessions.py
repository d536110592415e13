"""Play sessions: the worlds a server plays, one player's world, prompt and recording, and the
registry of all of them.

A ``ServedWorld`` is a world model loaded once, with what a page needs to know of it (its
actions, its sampling settings where it has any, its ``controls.json`` key map). A session plays its own ``World`` on a shallow copy of the served model: the weights are the
served model's own tensors (loaded once, shared by every session), while the state (context,
sampling generator) and the sampling settings (MaskGIT steps, temperature, where the world has
them) belong to the session. Its memory is bounded: the world keeps at most its context
window, the recording at most ``max_record_frames`` frames, the uploaded prompt one image.

Methods that run the model (``reset``, ``step``, ``atlas_png``, ``recording_file``) block; the
server runs them in worker threads, one at a time per session (the atlas excepted: it plays
a world of its own on the same weights).
"""

from __future__ import annotations

import copy
import io
import math
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

from nextworld.errors import UserInputError
from nextworld.models.genie.world import check_sampling
from nextworld.play.controls import read_key_map
from nextworld.play.dream import captioned, draw_atlas, write_video
from nextworld.play.world import World, load_world_model
from nextworld.zoo import resolve_world

RECORDING_FORMATS = ("gif", "mp4")
RECORDING_FPS = 10
"""Frames per second of a downloaded recording."""
MAX_SAMPLE_STEPS = 64
"""Most MaskGIT steps a player may ask for (more only makes each frame slower)."""
MAX_TEMPERATURE = 10.0
MAX_KEEP_BIAS = 100.0
"""Largest keep bias either way a player may set."""


def png_bytes(image: np.ndarray) -> bytes:
    """An image uint8 [H, W, 3] as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def sampling_settings(model: Any) -> dict[str, Any] | None:
    """The sampling settings a player may change, or None for a world without any.

    A world has them when it offers ``set_sampling(sample_steps, temperature, keep_bias)``
    (Genie's MaskGIT steps and temperature; ``keep_bias`` only for a world whose dynamics has a
    copy path); the player hides the controls a world lacks.
    """
    if not hasattr(model, "set_sampling"):
        return None
    settings = {"sample_steps": int(model.sample_steps), "temperature": float(model.temperature)}
    dynamics = getattr(model, "dynamics", None)
    if dynamics is not None and dynamics.config.copy_path:
        settings["keep_bias"] = float(model.keep_bias)
    return settings


@dataclass
class ServedWorld:
    """A world the server plays: its model (weights loaded once) and what the page needs to know."""

    name: str
    model: Any
    key_map: dict[str, int]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "actions": int(self.model.action_space.n), "frame_shape": list(self.model.frame_shape),
                "key_map": self.key_map, "sampling": sampling_settings(self.model)}


def load_served_world(name_or_dir: str | Path, device: str, *, allow_paths: bool) -> ServedWorld:
    """Load a world to serve; ``allow_paths=False`` for names a page sends (shipped worlds only)."""
    directory = resolve_world(name_or_dir, allow_paths=allow_paths)
    model = load_world_model(name_or_dir, device, allow_paths=allow_paths)
    if not isinstance(model.action_space, gym.spaces.Discrete):
        raise UserInputError(f"world {name_or_dir}: actions are {model.action_space}; the player plays discrete actions")
    return ServedWorld(directory.name, model, read_key_map(directory, int(model.action_space.n)))


class PlaySession:
    """One player's world: reset from a prompt, step under actions, record, draw its atlas."""

    def __init__(self, model: Any, world_name: str, *, seed: int, max_record_frames: int, atlas_steps: int) -> None:
        self.id = secrets.token_urlsafe(18)
        """Unguessable: it is the key to this session's uploads and downloads."""
        self.world_name = world_name
        self.world = World(copy.copy(model), seed)  # own sampling settings, the shared weights
        self.seed = seed
        self.max_record_frames = max_record_frames
        self.atlas_steps = atlas_steps
        self.prompt: np.ndarray | None = None
        """uint8 [T, H, W, 3]: the frames the world last started from (a reset restarts there)."""
        self.upload: np.ndarray | None = None
        """uint8 [H, W, 3]: the last uploaded image or sketch, fitted to the world's frames."""
        self.recording: list[tuple[np.ndarray, str]] = []
        """(frame uint8 [H, W, 3], caption) of the last recording, kept for download after it stops."""
        self.recording_on = False

    # ------------------------------------------------------------------------ playing

    def reset(self, prompt: np.ndarray) -> np.ndarray:
        """Start from prompt frames uint8 [T, H, W, 3] (the same seed each time); returns the first frame."""
        frame = self.world.reset(prompt, seed=self.seed)
        self.prompt = prompt
        self._record(frame, "t=0 prompt")
        return frame

    def step(self, action: Any) -> np.ndarray:
        """The next frame uint8 [H, W, 3] under ``action`` (an int in the world's action space)."""
        if self.world.frame is None:
            raise UserInputError("action: the world has not started; pick a dataset frame, upload an image "
                                 "or draw a sketch first")
        frame = self.world.step(action)
        self._record(frame, f"t={self.world.steps} a={action}")
        return frame

    def sampling(self) -> dict[str, Any] | None:
        return sampling_settings(self.world.model)

    def set_sampling(self, sample_steps: Any = None, temperature: Any = None, keep_bias: Any = None) -> dict[str, Any]:
        """Change this session's MaskGIT steps, temperature and/or keep bias (None keeps one);
        returns the settings."""
        settings = self.sampling()
        if settings is None:
            raise UserInputError(f"sampling: the world {self.world_name!r} has no sampling settings")
        if keep_bias is not None and "keep_bias" not in settings:
            raise UserInputError(f"sampling: the world {self.world_name!r} has no keep bias "
                                 f"(its dynamics has no copy path)")
        check_sampling("sampling: ", sample_steps, temperature, keep_bias, max_steps=MAX_SAMPLE_STEPS,
                       max_temperature=MAX_TEMPERATURE, max_keep_bias=MAX_KEEP_BIAS)
        self.world.model.set_sampling(sample_steps, temperature, keep_bias)
        return self.sampling()

    def atlas_png(self, prompt: np.ndarray) -> bytes:
        """A PNG of what each action does from ``prompt`` (see ``dream.draw_atlas``).

        It plays a world of its own on this session's model, so the session's state is untouched.
        """
        world = World(self.world.model, self.seed)
        scale = max(1, 64 // world.frame_shape[1])
        return png_bytes(draw_atlas(world, [prompt], self.atlas_steps, self.seed, scale))

    # ------------------------------------------------------------------------ recording

    def record(self, on: bool) -> None:
        """Start a new recording from the current frame, or stop (the frames stay for download)."""
        if on and not self.recording_on:
            self.recording = []
            self.recording_on = True
            if self.world.frame is not None:
                self._record(self.world.frame, f"t={self.world.steps}")
        elif not on:
            self.recording_on = False

    def _record(self, frame: np.ndarray, caption: str) -> None:
        if self.recording_on:
            self.recording.append((frame, caption))
            if len(self.recording) >= self.max_record_frames:
                self.recording_on = False

    def recording_file(self, fmt: str) -> bytes:
        """The recording as GIF or MP4 bytes: each frame upscaled with its step and action written beneath."""
        if fmt not in RECORDING_FORMATS:
            raise UserInputError(f"recording format {fmt!r}: expected one of {', '.join(RECORDING_FORMATS)}")
        frames = list(self.recording)
        if not frames:
            raise UserInputError("recording: nothing recorded yet; press Record, play, then download")
        scale = max(1, math.ceil(256 / frames[0][0].shape[1]))  # at least 256 pixels wide, so captions are legible
        pictures = [captioned(frame, caption, scale) for frame, caption in frames]
        with tempfile.TemporaryDirectory() as tmp:
            return write_video(Path(tmp) / f"recording.{fmt}", pictures, RECORDING_FPS).read_bytes()


class SessionRegistry:
    """The open sessions by id: the server's one piece of mutable shared state."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.sessions: dict[str, PlaySession] = {}

    def add(self, session: PlaySession) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise UserInputError(f"the server is full ({self.max_sessions} sessions are playing); try again later")
        self.sessions[session.id] = session

    def get(self, session_id: str) -> PlaySession | None:
        return self.sessions.get(session_id)

    def remove(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self.sessions)
