"""A world's keyboard controls: which real-world keys play which of its actions.

Number keys always pick actions by index (``0`` .. ``9``). A world may also name keys for
its actions in ``controls.json`` beside ``world.json``, for instance after a latent-to-real
action map was fitted (``nextworld eval`` reports one as ``action_map``)::

    {"ArrowLeft": 1, "ArrowRight": 6, "ArrowUp": 3, "ArrowDown": 0, "Space": 3}

Keys are the browser's ``KeyboardEvent.key`` names of the arrows, and ``Space``; values are
action indices of the world. A world without the file is played with number keys only.
"""

from __future__ import annotations

from pathlib import Path

from nextworld.atomic_files import read_json
from nextworld.errors import UserInputError

CONTROLS_FILE = "controls.json"
MAPPABLE_KEYS = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Space")
"""The keys ``controls.json`` may map (number keys always pick actions by index)."""


def read_key_map(directory: str | Path, num_actions: int) -> dict[str, int]:
    """``controls.json`` of a world directory as {key: action}; {} when the world has none."""
    path = Path(directory) / CONTROLS_FILE
    if not path.is_file():
        return {}
    spec = read_json(path)
    expected = f"an object mapping keys ({', '.join(MAPPABLE_KEYS)}) to actions 0..{num_actions - 1}"
    if not isinstance(spec, dict):
        raise UserInputError(f"{path}: expected {expected}")
    for key, action in spec.items():
        if key not in MAPPABLE_KEYS:
            raise UserInputError(f"{path}: key {key!r} cannot be mapped; expected {expected}")
        if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < num_actions:
            raise UserInputError(f"{path}: {key} -> {action!r} is not one of the world's actions 0..{num_actions - 1}")
    return dict(spec)
