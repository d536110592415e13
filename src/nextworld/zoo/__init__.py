"""Small pretrained models shipped inside the package, loadable offline by name.

Each is a directory here with ``README.md`` (the model card: the command that made it, its
data, its compute, and the evaluation JSON it was measured with) and ``eval.json``, and either

- a playable world (Genie): ``world.json`` and one sub-directory per stage (``config.json`` +
  ``model.safetensors``), found by :func:`resolve_world`; or
- one checkpoint (e.g. a JEPA world model for planning): ``config.json`` + ``model.safetensors``,
  found with the worlds by :func:`resolve_model`.
"""

from __future__ import annotations

import re
from pathlib import Path

from nextworld.errors import UserInputError

ZOO_DIR = Path(__file__).parent
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


WORLD_MARK = "world.json"
MODEL_MARK = "config.json"


def shipped_worlds() -> list[str]:
    """Names of the playable worlds in the package."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / WORLD_MARK).is_file())


def shipped_models() -> list[str]:
    """Names of everything shipped: the worlds and the single checkpoints."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / WORLD_MARK).is_file() or (p / MODEL_MARK).is_file())


def _resolve(name_or_dir: str | Path, marks: tuple[str, ...], known: list[str], what: str,
             allow_paths: bool) -> Path:
    text = str(name_or_dir)
    if allow_paths and Path(text).is_dir():
        return Path(text)
    if _NAME.match(text) and ".." not in text and any((ZOO_DIR / text / mark).is_file() for mark in marks):
        return ZOO_DIR / text
    names = ", ".join(known) or "none"
    if not allow_paths:
        raise UserInputError(f"{what} {text!r}: not a shipped {what} name (known: {names})")
    raise UserInputError(f"{what} {text!r}: no such directory, and not a shipped {what} (known: {names})")


def resolve_world(name_or_dir: str | Path, *, allow_paths: bool = True) -> Path:
    """The directory of a world: an existing directory, or the name of a shipped world.

    ``allow_paths=False`` (a server taking names from clients) accepts shipped names only,
    and refuses anything with a path in it.
    """
    return _resolve(name_or_dir, (WORLD_MARK,), shipped_worlds(), "world", allow_paths)


def resolve_model(name_or_dir: str | Path, *, allow_paths: bool = True) -> Path:
    """Like :func:`resolve_world`, for any shipped model (a world or a single checkpoint)."""
    return _resolve(name_or_dir, (WORLD_MARK, MODEL_MARK), shipped_models(), "model", allow_paths)
