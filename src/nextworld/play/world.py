"""``World``: a learned world to play, one frame at a time, in plain images.

    world = World.from_pretrained("coinrun-tiny")        # a shipped name or a run directory
    frame = world.reset(prompt_image)                     # uint8 [H, W, 3] (any size: it is fitted)
    frame = world.step(3)                                 # the next frame under latent action 3

It wraps any generative ``WorldModel`` (one that draws frames: ``Prediction.frames``) at batch
size 1 and keeps its state; ``nextworld dream``, the Gymnasium env (``world_env``) and the
web player all play through it. Sampling draws from the world's own generator, seeded by
``reset(seed=...)``, so a seeded session replays exactly and never touches torch's global one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from nextworld.data.frames import fit_square, on_white, to_model_frames, to_stored_frames
from nextworld.atomic_files import read_json
from nextworld.errors import UserInputError
from nextworld.models.genie.world import WORLD_FILE, GenieWorld
from nextworld.train.distributed import resolve_device
from nextworld.zoo import resolve_world

def _dreamer_world(directory: Path, device: torch.device) -> Any:
    from nextworld.models.base import load_pretrained

    return load_pretrained(directory, "dreamer", map_location=device).world_model.eval()


WORLD_LOADERS: dict[str, Callable[[Path, torch.device], Any]] = {
    "genie": lambda directory, device: GenieWorld.from_run(directory, map_location=device),
    "dreamer": _dreamer_world,
}
"""``world.json``'s family -> how to load that kind of world."""


def load_world_model(name_or_dir: str | Path, device: str = "cpu", *, allow_paths: bool = True) -> Any:
    """The WorldModel of a shipped world's name or a world directory (with ``world.json``)."""
    directory = resolve_world(name_or_dir, allow_paths=allow_paths)
    path = directory / WORLD_FILE
    if not path.is_file():
        # a Genie run whose dynamics stage has not been trained has no world.json
        raise UserInputError(f"{directory}: not a playable world (no {WORLD_FILE}); train every stage first")
    spec = read_json(path)
    family = spec.get("family") if isinstance(spec, dict) else None
    if family not in WORLD_LOADERS:
        raise UserInputError(f"{path}: unknown world family {family!r}; known: {', '.join(WORLD_LOADERS)}")
    return WORLD_LOADERS[family](directory, resolve_device(device))


def prompt_frames(prompt: Any, frame_shape: tuple[int, int, int]) -> np.ndarray:
    """A prompt as uint8 [T, H, W, C] frames of the world's shape.

    Accepts a PIL image, or a uint8 array [H, W, 3] (one image, any size: centre-cropped and
    resized) or [T, H, W, 3] (frames already of the world's size).
    """
    h, w, c = frame_shape
    if isinstance(prompt, Image.Image):
        return fit_square(prompt, h, "crop")[None]
    array = np.asarray(prompt)
    if array.dtype != np.uint8:
        raise UserInputError(f"prompt: expected uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        if array.shape[:2] == (h, w) and array.shape[-1] == c:
            return array[None]
        return fit_square(on_white(Image.fromarray(array)), h, "crop")[None]
    if array.ndim == 4 and array.shape[1:] == (h, w, c) and array.shape[0] >= 1:
        return array
    raise UserInputError(f"prompt: expected an image [H, W, 3] or frames [T, {h}, {w}, {c}], got shape {list(array.shape)}")


class World:
    """One played world (batch 1): ``reset(prompt) -> frame``, ``step(action) -> frame``."""

    def __init__(self, model: Any, seed: int | None = None) -> None:
        self.model = model
        self.action_space = model.action_space
        self.frame_shape: tuple[int, int, int] = tuple(model.frame_shape)
        self.generator = torch.Generator(device=model.device)
        self.generator.manual_seed(0 if seed is None else seed)
        self.state: Any = None
        self.frame: np.ndarray | None = None
        """The last frame, uint8 [H, W, 3] (None before ``reset``)."""
        self.steps = 0
        """Steps since the last reset."""

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, device: str = "cpu", seed: int | None = None) -> World:
        """A shipped world by name (``coinrun-tiny``) or a trained run's directory."""
        return cls(load_world_model(name_or_dir, device), seed)

    @property
    def num_actions(self) -> int:
        return int(self.action_space.n)

    def reset(self, prompt: Any, seed: int | None = None) -> np.ndarray:
        """Start from a prompt (see ``prompt_frames``); returns the last prompt frame as the world draws it."""
        frames = prompt_frames(prompt, self.frame_shape)  # (T, H, W, C)
        if seed is not None:
            self.generator.manual_seed(seed)
        x = to_model_frames(torch.tensor(frames, device=self.model.device))[None]  # (1, T, C, H, W)
        self.state = self.model.encode(x)
        self.frame = to_stored_frames(self.model.decode(self.state)[0]).cpu().numpy()
        self.steps = 0
        return self.frame

    def step(self, action: int) -> np.ndarray:
        """The next frame, uint8 [H, W, 3], under ``action`` (an int in the action space)."""
        if self.state is None:
            raise RuntimeError("World.step before reset: start the world from a prompt first")
        valid = isinstance(action, (int, np.integer)) and not isinstance(action, bool)
        if not valid or not self.action_space.contains(int(action)):
            raise UserInputError(f"action {action!r}: outside the world's actions 0..{self.num_actions - 1}")
        self.state, pred = self.model.step(self.state, torch.tensor([int(action)], device=self.model.device),
                                           generator=self.generator)
        self.frame = to_stored_frames(pred.frames[0]).cpu().numpy()
        self.steps += 1
        return self.frame
