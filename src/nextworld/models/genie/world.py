"""A Genie world: the three trained stages behind the one WorldModel face.

``GenieWorld`` holds a video tokenizer, a latent action model and a dynamics model, loaded
from a Genie run directory (or a shipped world, which has the same layout)::

    RUN/tokenizer/   RUN/lam/   RUN/dynamics/      each: config.json + model.safetensors
    RUN/world.json   {"format": "nextworld-world", "family": "genie",
                      "sampling": {"sample_steps": 2, "temperature": 0.0, "keep_bias": 0.0}}   (sampling optional)

``sampling`` holds the world's default MaskGIT steps, temperature and (for a motion-compensated
dynamics) keep bias, chosen on a validation split (training-level episodes) when the world is
packaged; without it a world samples with 8 steps at temperature 1 and no keep bias.

Playing: ``encode`` tokenizes one or more prompt frames (the actions between several prompt
frames are inferred by the latent action model) and caches them in the dynamics model;
each ``step`` samples the next frame's tokens under a latent action by MaskGIT and decodes
them to pixels. A ``copy_path`` dynamics may instead keep a token of the last frame (moved by
the action's shift, for a motion-compensated one); a kept token shows the last frame's moved
pixels themselves, not their re-decoding, so what merely scrolls is not blurred again by the
tokenizer at every step (the prompt's pixels enter through the tokenizer, as every frame's).
When the context holds ``max_frames`` frames, it is rebuilt from the last ``max_frames - 1``
ones (a sliding window), so a world plays for as long as one likes with bounded memory.

The state is consumed by ``step``: its key/value cache grows in place, so step a state
once (``encode`` the prompt again to branch).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from nextworld.atomic_files import read_json
from nextworld.errors import UserInputError
from nextworld.data.camera import translate_over
from nextworld.models.base import Prediction, load_pretrained
from nextworld.models.genie.dynamics import GenieDynamics
from nextworld.models.genie.latent_actions import LatentActionModel, infer_actions_windowed
from nextworld.models.genie.tokenizer import VideoTokenizer
from nextworld.nn.space_time import KVCache

WORLD_FILE = "world.json"
STAGE_FAMILIES = {"tokenizer": "genie-tokenizer", "lam": "genie-lam", "dynamics": "genie-dynamics"}
"""Stage subdirectory -> the family its checkpoint must be."""


@dataclass
class GenieState:
    """Where a batch of played worlds stands."""

    tokens: torch.Tensor
    """int64 [B, L, h, w]: the frames in context, oldest first (L <= max_frames)."""
    actions: torch.Tensor
    """int64 [B, L-1]: the latent actions between those frames."""
    cache: KVCache
    """The dynamics model's keys and values of those L frames."""
    last_frame: torch.Tensor | None = None
    """float [B, C, H, W]: the last frame shown, when a step made it (None for a prompt: its
    tokens decoded). A ``copy_path`` world's frame keeps the pixels of every kept token."""


def pixel_mask(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A per-token bool grid [B, h, w] -> per pixel [B, 1, H, W] (each token covers an equal patch)."""
    (h, w), (height, width) = tokens.shape[-2:], size
    return tokens.repeat_interleave(height // h, dim=-2).repeat_interleave(width // w, dim=-1)[:, None]


def check_stages_agree(tokenizer: VideoTokenizer, lam: LatentActionModel, dynamics: GenieDynamics,
                       where: str) -> None:
    """Raise UserInputError naming ``where`` unless the stages were built for one another."""
    t, d = tokenizer.config, dynamics.config
    problems = []
    if tokenizer.num_codes != d.num_codes:
        problems.append(f"tokenizer has {tokenizer.num_codes} codes, dynamics expects {d.num_codes}")
    if t.token_grid != tuple(d.token_grid):
        problems.append(f"tokenizer makes {t.token_grid} tokens per frame, dynamics expects {tuple(d.token_grid)}")
    if lam.num_actions != d.num_actions:
        problems.append(f"latent action model has {lam.num_actions} actions, dynamics expects {d.num_actions}")
    if (lam.config.image_size, lam.config.channels) != (t.image_size, t.channels):
        problems.append("latent action model and tokenizer read frames of different sizes")
    if problems:
        raise UserInputError(f"{where}: stages do not fit together: {'; '.join(problems)}")


SAMPLING_KEYS = ("sample_steps", "temperature", "keep_bias")
"""The settings a Genie world samples with (``GenieWorld.set_sampling``)."""


def check_sampling(where: str, sample_steps: Any = None, temperature: Any = None, keep_bias: Any = None, *,
                   max_steps: int | None = None, max_temperature: float | None = None,
                   max_keep_bias: float | None = None) -> None:
    """Raise UserInputError (prefixed with ``where``) unless each given setting has its type and
    range: ``sample_steps`` an integer >= 1, ``temperature`` a number >= 0, ``keep_bias`` a finite
    number, each within the given maxima (a keep bias within +-``max_keep_bias``). None is unset.
    The one check of world.json, the Python API and the web player alike."""
    def number(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)

    if sample_steps is not None and (isinstance(sample_steps, bool) or not isinstance(sample_steps, numbers.Integral)
                                     or sample_steps < 1 or (max_steps is not None and sample_steps > max_steps)):
        bound = "of at least 1" if max_steps is None else f"in 1..{max_steps}"
        raise UserInputError(f"{where}sample_steps {sample_steps!r} must be an integer {bound}")
    if temperature is not None and (not number(temperature) or temperature < 0
                                    or (max_temperature is not None and temperature > max_temperature)):
        bound = "of at least 0" if max_temperature is None else f"in 0..{max_temperature:g}"
        raise UserInputError(f"{where}temperature {temperature!r} must be a number {bound}")
    if keep_bias is not None and (not number(keep_bias)
                                  or (max_keep_bias is not None and abs(keep_bias) > max_keep_bias)):
        bound = "a finite number" if max_keep_bias is None else f"a number in -{max_keep_bias:g}..{max_keep_bias:g}"
        raise UserInputError(f"{where}keep_bias {keep_bias!r} must be {bound}")


def read_sampling(directory: Path) -> dict[str, Any]:
    """The ``sampling`` defaults of a world directory's world.json ({} when it has none)."""
    path = Path(directory) / WORLD_FILE
    if not path.is_file():
        return {}
    spec = read_json(path)
    sampling = spec.get("sampling", {}) if isinstance(spec, dict) else {}
    if not isinstance(sampling, dict) or set(sampling) - {*SAMPLING_KEYS, "chosen_on"}:
        raise UserInputError(f"{path}: 'sampling' must be an object with {', '.join(SAMPLING_KEYS)}, chosen_on")
    settings = {k: sampling[k] for k in SAMPLING_KEYS if k in sampling}
    check_sampling(f"{path}: sampling.", **settings)
    return settings


class GenieWorld(nn.Module):
    """Tokenizer + latent action model + dynamics: frames in, next frames out under latent actions."""

    def __init__(self, tokenizer: VideoTokenizer, lam: LatentActionModel, dynamics: GenieDynamics) -> None:
        super().__init__()
        check_stages_agree(tokenizer, lam, dynamics, "Genie world")
        self.tokenizer, self.lam, self.dynamics = tokenizer, lam, dynamics
        self.action_space = gym.spaces.Discrete(dynamics.config.num_actions)
        self.sample_steps = 8
        """MaskGIT iterations per generated frame."""
        self.temperature = 1.0
        """Sampling temperature (0: the most likely token everywhere)."""
        self.keep_bias = 0.0
        """Added to a motion-compensated dynamics' "keep" log-probability when sampling (0: as trained)."""
        self.eval()

    @classmethod
    def from_run(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> GenieWorld:
        """Load the three stages of a Genie run (or shipped world) directory."""
        directory = Path(directory)
        missing = [stage for stage in STAGE_FAMILIES if not (directory / stage / "config.json").is_file()]
        if missing:
            raise UserInputError(f"{directory}: not a trained Genie world: no {', '.join(missing)} stage "
                                 f"(train it with `nextworld train genie --stage ...`)")
        stages = {stage: load_pretrained(directory / stage, family, map_location)
                  for stage, family in STAGE_FAMILIES.items()}
        check_stages_agree(stages["tokenizer"], stages["lam"], stages["dynamics"], str(directory))
        world = cls(stages["tokenizer"], stages["lam"], stages["dynamics"])
        world.set_sampling(**read_sampling(directory))
        return world

    def set_sampling(self, sample_steps: int | None = None, temperature: float | None = None,
                     keep_bias: float | None = None) -> None:
        """Change the MaskGIT steps, temperature and/or keep bias (None keeps the current value)."""
        check_sampling("", sample_steps, temperature, keep_bias)
        if keep_bias and not self.dynamics.config.copy_path:
            raise UserInputError(f"keep_bias {keep_bias}: this world's dynamics has no copy path "
                                 f"(motion compensation) to bias")
        if sample_steps is not None:
            self.sample_steps = int(sample_steps)
        if temperature is not None:
            self.temperature = float(temperature)
        if keep_bias is not None:
            self.keep_bias = float(keep_bias)

    # ------------------------------------------------------------------------ the WorldModel face

    @property
    def device(self) -> torch.device:
        return self.dynamics.head.weight.device

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the frames this world reads and draws."""
        return self.tokenizer.config.frame_shape

    @property
    def max_frames(self) -> int:
        return self.dynamics.config.max_frames

    @torch.no_grad()
    def infer_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """The latent action of every transition of a clip of any length.

        Args:
            frames: float [B, T, C, H, W] in [0, 1], T >= 2.
        Returns:
            int64 [B, T-1]. Clips longer than the latent action model's ``max_frames`` are
            read in windows that overlap by one frame, so every transition is seen once.
        """
        return infer_actions_windowed(self.lam, frames)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> GenieState:
        """Start worlds from prompt frames.

        Args:
            frames: float [B, T, C, H, W] in [0, 1], 1 <= T; only the last ``max_frames - 1``
                are kept as context (one place is left for the next frame).
        """
        frames = frames[:, -(self.max_frames - 1):]
        tokens = self.tokenizer.encode(frames)  # (B, T, h, w)
        actions = (self.infer_actions(frames) if frames.shape[1] > 1
                   else tokens.new_zeros(tokens.shape[0], 0))  # (B, T-1)
        return GenieState(tokens, actions, self.dynamics.prefill(tokens, actions))

    @torch.no_grad()
    def step(self, state: GenieState, action: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[GenieState, Prediction]:
        """Generate the next frame of every world under ``action`` (int64 [B] latent actions).

        Returns the new state and a Prediction with ``frames`` float [B, C, H, W] and
        ``tokens`` int64 [B, h, w]. ``state`` is consumed (see the module docstring). For a
        ``copy_path`` world the frame shows kept tokens as the last frame's moved pixels, so it is
        not exactly ``tokens`` decoded.
        """
        action = torch.as_tensor(action, dtype=torch.long, device=self.device).reshape(-1)
        n = self.action_space.n
        if action.numel() != state.tokens.shape[0]:
            raise ValueError(f"step expects one action per world ({state.tokens.shape[0]}), got {action.numel()}")
        if int(action.min()) < 0 or int(action.max()) >= n:
            raise ValueError(f"latent actions must lie in [0, {n}), got {action.tolist()}")
        tokens, actions, cache = state.tokens, state.actions, state.cache
        if cache.length >= self.max_frames:  # slide: keep the last max_frames - 1 frames
            tokens, actions = tokens[:, 1:], actions[:, 1:]
            cache = self.dynamics.prefill(tokens, actions)
        copy_path, table = self.dynamics.config.copy_path, self.dynamics.config.shift_table(tokens.device)
        last = None  # the last frame shown, float [B, C, H, W], which a copy_path world keeps pixels of
        if copy_path:
            last = self._last_frame(tokens) if state.last_frame is None else state.last_frame
        previous = self.keep_grid(tokens, action, last)  # (B, h, w)
        new = self.dynamics.generate_next(cache, action, self.sample_steps, self.temperature, generator,
                                          previous=previous, keep_bias=self.keep_bias)  # (B, h, w)
        state = GenieState(torch.cat([tokens, new[:, None]], dim=1), torch.cat([actions, action[:, None]], dim=1), cache)
        state.last_frame = self._last_frame(state.tokens)
        if copy_path:
            # a kept token shows the (moved) pixels it was kept from, not their re-decoding, so
            # what stays on screen is not blurred again by the tokenizer at every step; where the
            # move uncovered the border (a repeated edge, not content) the decoding is shown
            kept = pixel_mask(new == previous, last.shape[-2:])  # (B, 1, H, W)
            moved = last if table is None else translate_over(last, table[action], state.last_frame)
            state.last_frame = torch.where(kept, moved, state.last_frame)
        return state, Prediction(frames=state.last_frame, tokens=new)

    @torch.no_grad()
    def keep_grid(self, tokens: torch.Tensor, action: torch.Tensor,
                  last_frame: torch.Tensor | None = None) -> torch.Tensor:
        """The tokens the dynamics' "keep" path points at for the frame after ``tokens`` (int64
        [B, T, h, w]) under ``action`` (int64 [B]): the last frame's own tokens, or, for a
        motion-compensated dynamics (``action_shifts``), the last frame (``last_frame``, the one
        shown, when given, else decoded from ``tokens``) moved by the action's shift and tokenized."""
        table = self.dynamics.config.shift_table(tokens.device)
        if table is None:
            return tokens[:, -1]
        frame = self._last_frame(tokens) if last_frame is None else last_frame
        return self.tokenizer.encode_moved(frame, table[action])

    def _last_frame(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens int64 [B, T, h, w] -> the last frame, float [B, C, H, W] in [0, 1].

        A conv tokenizer decodes each frame alone; an ST-ViViT one (``arch="st"``) decodes the
        frame with the context its temporal attention was trained on.
        """
        context = tokens if self.tokenizer.config.arch == "st" else tokens[:, -1:]
        return self.tokenizer.decode(context)[:, -1]

    @torch.no_grad()
    def decode(self, state: GenieState) -> torch.Tensor:
        """The last frame of every world, float [B, C, H, W] in [0, 1]: the frame ``step`` showed,
        or the last tokens decoded (a prompt)."""
        return self._last_frame(state.tokens) if state.last_frame is None else state.last_frame

    @torch.no_grad()
    def rollout(self, prompt: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Frames generated from prompt frames under a sequence of latent actions.

        Args:
            prompt: float [B, T, C, H, W] in [0, 1].
            actions: int64 [B, K]; ``actions[:, k]`` leads to generated frame k.
        Returns:
            float [B, K, C, H, W].
        """
        state, out = self.encode(prompt), []
        for k in range(actions.shape[1]):
            state, pred = self.step(state, actions[:, k], generator)
            out.append(pred.frames)
        return torch.stack(out, dim=1)
