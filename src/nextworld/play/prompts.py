"""Prompts from the command line: an image file, or a frame of an episode dataset.

    load_prompt("sketch.png", (64, 64, 3))            # any picture PIL opens, any size
    load_prompt("data/heldout:3:10", (64, 64, 3))      # DATASET:episode:frame

Either way the result is uint8 [1, H, W, 3] in the world's frame shape, ready for
``World.reset``. Pictures are centre-cropped to a square and resized (``fit_square``);
transparent parts are laid on white (a sketch's background is paper); a photo's EXIF
rotation is applied. Files are size-checked before their pixels are decoded, so a huge
picture (or a decompression bomb) is refused at once.
"""

from __future__ import annotations

import io

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.frames import fit_square, on_white
from nextworld.errors import UserInputError

MAX_PROMPT_BYTES = 20_000_000
"""Largest image file read as a prompt (20 MB)."""
MAX_PROMPT_PIXELS = 40_000_000
"""Largest image (width x height) decoded as a prompt (40 megapixels)."""
_DATASET_SPEC = re.compile(r"^(?P<dataset>.+):(?P<episode>[^:]*):(?P<frame>[^:]*)$")


def parse_dataset_spec(spec: str) -> tuple[Path, int, int] | None:
    """(dataset dir, episode, frame) of a ``DATASET:episode:frame`` spec, or None if ``spec``
    is not one (no such form, or DATASET is not a directory). Raises UserInputError when
    DATASET is a directory but the indices are not integers."""
    match = _DATASET_SPEC.match(spec)
    if match is None or not Path(match["dataset"]).is_dir():
        return None
    try:
        return Path(match["dataset"]), int(match["episode"]), int(match["frame"])
    except ValueError:
        raise UserInputError(f"prompt {spec!r}: expected DATASET:episode:frame with integer "
                             f"episode and frame indices") from None


def load_clip(dataset_dir: str | Path, episode: int, start: int, length: int, *,
              frame_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Frames ``start:start+length`` of one episode of a dataset.

    Args:
        frame_shape: if given, the dataset's (H, W, C) must equal it (a world's frame shape).
    Returns:
        uint8 [length, H, W, 3].
    """
    ds = EpisodeDataset(dataset_dir)
    where = f"dataset {dataset_dir}"
    if frame_shape is not None and tuple(ds.frame_shape) != tuple(frame_shape):
        raise UserInputError(f"{where}: frames are {'x'.join(map(str, ds.frame_shape))}, the world draws "
                             f"{'x'.join(map(str, frame_shape))}")
    if not 0 <= episode < len(ds):
        raise UserInputError(f"{where}: no episode {episode} (it has episodes 0..{len(ds) - 1})")
    n = ds.episodes[episode].length
    if not 0 <= start < n:
        raise UserInputError(f"{where}: episode {episode} has frames 0..{n - 1}, not frame {start}")
    if start + length > n:
        raise UserInputError(f"{where}: episode {episode} has {n} frames; a clip of {length} from frame "
                             f"{start} needs {start + length}")
    return ds.read(episode, start, start + length, keys=("frames",))["frames"]


def load_clip_actions(dataset_dir: str | Path, episode: int, start: int, length: int) -> np.ndarray | None:
    """The recorded actions of the clip :func:`load_clip` reads (row t: the action after frame t), or None
    for action-free data."""
    ds = EpisodeDataset(dataset_dir)
    if ds.action_space is None:
        return None
    return ds.read(episode, start, start + length, keys=("actions",))["actions"]


def load_image(source: Path | bytes, size: int, *, name: str | None = None) -> np.ndarray:
    """A picture, from a file or its bytes in memory, as a square frame, uint8 [size, size, 3]
    (see the module docstring). Errors name it ``prompt NAME`` (the path when ``name`` is None)."""
    name = str(source) if name is None else name
    nbytes = len(source) if isinstance(source, bytes) else source.stat().st_size
    if nbytes == 0:
        raise UserInputError(f"prompt {name}: empty file")
    if nbytes > MAX_PROMPT_BYTES:
        raise UserInputError(f"prompt {name}: {nbytes / 1e6:.1f} MB, over the {MAX_PROMPT_BYTES / 1e6:g} MB "
                             f"limit for a prompt image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)  # reads the header only
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UserInputError(f"prompt {name}: image too large to decode safely "
                                 f"(over {MAX_PROMPT_PIXELS / 1e6:.0f} megapixels)") from None
        except OSError:  # UnidentifiedImageError included
            raise UserInputError(f"prompt {name}: not an image file PIL can read") from None
    with image:
        width, height = image.size
        if width * height > MAX_PROMPT_PIXELS:
            raise UserInputError(f"prompt {name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
                                 f"over the {MAX_PROMPT_PIXELS / 1e6:.0f} megapixel limit for a prompt image")
        try:
            image = on_white(ImageOps.exif_transpose(image))
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise UserInputError(f"prompt {name}: a damaged or truncated image ({e})") from None
    return fit_square(image, size, "crop")


def load_prompt(spec: str, frame_shape: tuple[int, int, int]) -> np.ndarray:
    """A prompt from an image file path or a ``DATASET:episode:frame`` spec.

    Args:
        frame_shape: the world's (H, W, C) of square RGB frames.
    Returns:
        uint8 [1, H, W, 3].
    """
    path = Path(spec)
    if spec and path.is_file():
        return load_image(path, frame_shape[0])[None]
    dataset = parse_dataset_spec(spec)
    if dataset is not None:
        return load_clip(*dataset, 1, frame_shape=frame_shape)
    if spec and path.is_dir():
        raise UserInputError(f"prompt {spec!r}: a directory; a dataset frame is given as DATASET:episode:frame")
    raise UserInputError(f"prompt {spec!r}: no such image file, nor a DATASET:episode:frame "
                         f"of an existing dataset directory")
