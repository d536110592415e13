"""Small pretrained worlds shipped inside the package, loadable offline by name.

Each is a directory here: ``world.json``, one sub-directory per stage (``config.json`` +
``model.safetensors``), ``README.md`` (the model card: the command that made it, its data,
its compute, and the evaluation JSON it was measured with) and ``eval.json``.
"""

from __future__ import annotations

import re
from pathlib import Path

from nextworld.errors import UserInputError

ZOO_DIR = Path(__file__).parent
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def shipped_worlds() -> list[str]:
    """Names of the worlds in the package."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "world.json").is_file())


def resolve_world(name_or_dir: str | Path, *, allow_paths: bool = True) -> Path:
    """The directory of a world: an existing directory, or the name of a shipped world.

    ``allow_paths=False`` (a server taking names from clients) accepts shipped names only,
    and refuses anything with a path in it.
    """
    text = str(name_or_dir)
    if allow_paths and Path(text).is_dir():
        return Path(text)
    if _NAME.match(text) and ".." not in text and (ZOO_DIR / text / "world.json").is_file():
        return ZOO_DIR / text
    known = ", ".join(shipped_worlds()) or "none"
    if not allow_paths:
        raise UserInputError(f"world {text!r}: not a shipped world name (known: {known})")
    raise UserInputError(f"world {text!r}: no such directory, and not a shipped world (known: {known})")
