"""``nextworld dream``: a world's imagination written to a file.

Three pictures of what a world has learned:

- a dream (default): from a prompt, step through ``--actions``; a GIF or MP4 of the prompt
  frame and every generated frame, each captioned with its step and action (``t=2 a=3``);
- an atlas (``--atlas``): a PNG with one row per prompt and one column per latent action,
  showing where ``atlas_steps`` repetitions of that action lead, so the latent actions can be
  named by eye;
- real against dreamed (``--side-by-side``): a clip of a dataset beside the world's
  regeneration of it from its first frame under the latent actions inferred from the clip.

Frames are upscaled by nearest neighbour (``scale``) before captions are drawn, so small
frames stay crisp and the text stays legible. Every caption differs from the one before
(it holds the step), so a GIF keeps every frame rather than merging repeats. Files are
written atomically: an error leaves no half-written file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import av
import numpy as np
import torch
import tyro
from PIL import Image, ImageDraw, ImageFont

from nextworld.atomic_files import write_atomic
from nextworld.data.frames import to_model_frames
from nextworld.errors import UserInputError
from nextworld.play.prompts import load_clip, load_clip_actions, load_prompt, parse_dataset_spec
from nextworld.play.world import World

VIDEO_EXTENSIONS = (".gif", ".mp4")
GAP = 2
"""White pixels between frames (after scaling)."""


@dataclass
class DreamConfig:
    """Dream a video from a world and a prompt; or draw an atlas of its latent actions, or real beside dreamed."""

    run: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """A playable run directory (Genie, or Dreamer with its real actions) or a shipped world's name."""
    out: Path
    """File to write: .gif or .mp4 (a dream, or --side-by-side), .png (--atlas)."""
    prompt: str | None = None
    """The first frame: an image file (png, jpg, webp, ...; any size) or DATASET:episode:frame."""
    actions: str | None = None
    """Latent actions to take, comma-separated (e.g. 1,1,3,0); required for a dream."""
    atlas: bool = False
    """Write a PNG grid of what each latent action does instead of a video."""
    side_by_side: bool = False
    """Write a real clip (from --prompt DATASET:episode:frame) beside its regeneration."""
    frames: int = 16
    """Length of the --side-by-side clip, in frames (the real clip's first frame included)."""
    atlas_prompts: str | None = None
    """Prompts for the atlas rows, separated by ';' (default: --prompt)."""
    atlas_steps: int = 4
    """Repetitions of each action before the atlas shows its frame."""
    seed: int = 0
    """Seed of the world's sampling; the same seed dreams the same file."""
    temperature: float | None = None
    """Sampling temperature (0: the most likely token everywhere); the world's own when unset."""
    maskgit_steps: int | None = None
    """MaskGIT iterations per generated frame; the world's own when unset."""
    keep_bias: float | None = None
    """Added to a motion-compensated world's "keep" log-probability; the world's own when unset."""
    fps: int = 10
    """Frames per second of the video."""
    scale: int = 4
    """Nearest-neighbour upscaling of the written frames."""
    device: str = "cpu"
    """auto, cpu, cuda or cuda:N."""


def parse_actions(text: str | None, num_actions: int) -> list[int]:
    """``"1,1,3,0"`` -> [1, 1, 3, 0], each checked to lie in 0..num_actions-1."""
    parts = [p.strip() for p in (text or "").split(",")]
    if not any(parts):
        raise UserInputError("--actions: none given; pass latent actions like --actions 1,1,3,0")
    try:
        actions = [int(p) for p in parts]
    except ValueError:
        raise UserInputError(f"--actions {text!r}: expected comma-separated integers like 1,1,3,0") from None
    bad = sorted({a for a in actions if not 0 <= a < num_actions})
    if bad:
        raise UserInputError(f"--actions: {', '.join(map(str, bad))} outside the world's latent actions "
                             f"0..{num_actions - 1}")
    return actions


# ---------------------------------------------------------------------------- pictures


def _upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """uint8 [H, W, 3] -> [H*scale, W*scale, 3], nearest neighbour."""
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


def _label(text: str, width: int) -> np.ndarray:
    """A white strip uint8 [h, width, 3] with ``text`` centred on it in PIL's default font."""
    font = ImageFont.load_default()
    strip = Image.new("RGB", (width, font.getbbox("Ag")[3] + 4), "white")
    ImageDraw.Draw(strip).text((width / 2, strip.height / 2), text, fill="black", font=font, anchor="mm")
    return np.asarray(strip)


def _hcat(images: list[np.ndarray]) -> np.ndarray:
    """Images of one height side by side, GAP white pixels apart."""
    gap = np.full((images[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([part for image in images for part in (gap, image)][1:], axis=1)


def _vcat(images: list[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Images of one width stacked top to bottom, ``gap`` white pixels apart."""
    space = np.full((gap, images[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for image in images for part in (space, image)][1:], axis=0)


def captioned(frame: np.ndarray, text: str, scale: int) -> np.ndarray:
    """A frame upscaled, with ``text`` on a strip beneath it (a dream's or a played session's video frame)."""
    big = _upscale(frame, scale)
    return _vcat([big, _label(text, big.shape[1])], gap=0)


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """Frames (uint8 [H, W, 3] each, one size) as a GIF (PIL) or MP4 (H.264, yuv420p), atomically."""
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        return write_atomic(path, lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0))
    h, w, _ = frames[0].shape  # yuv420p needs even sides: pad with white
    frames = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255) for f in frames]

    def write_mp4(tmp: Path) -> None:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = frames[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    return write_atomic(path, write_mp4)


# ---------------------------------------------------------------------------- the three modes


def _dream(world: World, prompt: np.ndarray, actions: list[int], cfg: DreamConfig) -> list[np.ndarray]:
    frames = [captioned(world.reset(prompt, seed=cfg.seed), "t=0 prompt", cfg.scale)]
    for t, a in enumerate(actions, start=1):
        frames.append(captioned(world.step(a), f"t={t} a={a}", cfg.scale))
    return frames


def draw_atlas(world: World, prompts: list[np.ndarray], steps: int, seed: int, scale: int) -> np.ndarray:
    """What each action does: one row per prompt (the prompt, then each action repeated ``steps``
    times from a fresh reset of it), under a header of labels; uint8 [H, W, 3]. Resets ``world``."""
    rows = []
    for prompt in prompts:
        row = [world.reset(prompt, seed=seed)]
        for action in range(world.num_actions):
            world.reset(prompt, seed=seed)
            for _ in range(steps):
                frame = world.step(action)
            row.append(frame)
        rows.append(_hcat([_upscale(f, scale) for f in row]))
    width = world.frame_shape[1] * scale
    header = _hcat([_label(text, width) for text in ["prompt"] + [f"action {a}" for a in range(world.num_actions)]])
    return _vcat([header, *rows])


def _side_by_side(world: World, clip: np.ndarray, recorded: np.ndarray | None, cfg: DreamConfig) -> list[np.ndarray]:
    """clip: uint8 [T, H, W, 3] -> T frames, real | dreamed. A world with latent actions (Genie) dreams
    under those it infers from the clip; any other under the clip's ``recorded`` actions [T]."""
    if hasattr(world.model, "infer_actions"):
        x = to_model_frames(torch.from_numpy(clip).to(world.model.device))[None]  # (1, T, C, H, W)
        actions = world.model.infer_actions(x)[0].tolist()  # T-1 latent actions
    elif recorded is not None:
        actions = [int(a) for a in recorded[:-1]]
    else:
        raise UserInputError("--side-by-side: the dataset records no actions, and this world infers none")
    dreamed = [world.reset(clip[:1], seed=cfg.seed)] + [world.step(a) for a in actions]
    return [_hcat([captioned(real, f"real t={t}", cfg.scale),
                   captioned(fake, f"dreamed a={actions[t - 1]}" if t else "dreamed", cfg.scale)])
            for t, (real, fake) in enumerate(zip(clip, dreamed))]


def _check(cfg: DreamConfig) -> list[str]:
    """Refuse a config that cannot work before any world is loaded; returns the prompt specs."""
    if cfg.atlas and cfg.side_by_side:
        raise UserInputError("--atlas and --side-by-side: choose one")
    wanted = (".png",) if cfg.atlas else VIDEO_EXTENSIONS
    if Path(cfg.out).suffix.lower() not in wanted:
        raise UserInputError(f"--out {cfg.out}: expected a {' or '.join(wanted)} file"
                             + (" for --atlas" if cfg.atlas else ""))
    for name, least in (("frames", 2), ("atlas_steps", 1), ("maskgit_steps", 1), ("fps", 1), ("scale", 1)):
        if getattr(cfg, name) is not None and getattr(cfg, name) < least:
            raise UserInputError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be at least {least}")
    if cfg.temperature is not None and cfg.temperature < 0:
        raise UserInputError(f"--temperature {cfg.temperature}: must be >= 0")
    if cfg.actions is not None and (cfg.atlas or cfg.side_by_side):
        raise UserInputError("--actions: only a dream takes actions; --atlas and --side-by-side choose their own")
    if cfg.atlas:
        specs = [s.strip() for s in (cfg.atlas_prompts or cfg.prompt or "").split(";") if s.strip()]
    else:
        specs = [cfg.prompt] if cfg.prompt else []
    if not specs:
        raise UserInputError("--prompt: none given; pass an image file or DATASET:episode:frame"
                             + (" (or --atlas-prompts 'A;B;...')" if cfg.atlas else ""))
    if cfg.side_by_side and parse_dataset_spec(specs[0]) is None:
        raise UserInputError(f"--side-by-side needs --prompt DATASET:episode:frame, not {specs[0]!r}")
    return specs


def dream(cfg: DreamConfig) -> Path:
    """Write the dream, atlas or side-by-side video that ``cfg`` asks for; returns its path."""
    specs = _check(cfg)
    world = World.from_pretrained(cfg.run, cfg.device, seed=cfg.seed)
    if hasattr(world.model, "set_sampling"):
        world.model.set_sampling(cfg.maskgit_steps, cfg.temperature, cfg.keep_bias)
    elif (cfg.maskgit_steps, cfg.temperature, cfg.keep_bias) != (None, None, None):
        raise UserInputError(f"--maskgit-steps / --temperature / --keep-bias: {cfg.run} has no such sampling "
                             f"settings (a Genie world has)")
    if cfg.side_by_side:
        spec = parse_dataset_spec(specs[0])
        clip = load_clip(*spec, cfg.frames, frame_shape=world.frame_shape)  # (T, H, W, 3)
        recorded = None if hasattr(world.model, "infer_actions") else load_clip_actions(*spec, cfg.frames)
        return write_video(Path(cfg.out), _side_by_side(world, clip, recorded, cfg), cfg.fps)
    if cfg.atlas:
        grid = draw_atlas(world, [load_prompt(s, world.frame_shape) for s in specs], cfg.atlas_steps,
                          cfg.seed, cfg.scale)
        return write_atomic(cfg.out, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    actions = parse_actions(cfg.actions, world.num_actions)
    return write_video(Path(cfg.out), _dream(world, load_prompt(specs[0], world.frame_shape), actions, cfg), cfg.fps)
