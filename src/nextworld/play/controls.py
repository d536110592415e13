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
KEY_SYMBOLS = {"ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓", "Space": "Space"}
"""The keys ``controls.json`` may map, and how to write each for a person."""
MAPPABLE_KEYS = tuple(KEY_SYMBOLS)
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


PROCGEN_KEY_ACTIONS: dict[str, tuple[int, ...]] = {
    "ArrowLeft": (1, 0, 2), "ArrowRight": (7, 8, 6), "ArrowUp": (5, 2, 8), "ArrowDown": (3, 0, 6), "Space": (5, 8, 2),
}
"""What each key means in Procgen's 15 actions, best first: 0-8 are the 3x3 grid of (left, none,
right) x (down, none, up), so LEFT is 1, RIGHT 7, UP 5, DOWN 3 and the diagonals the corners."""


def controls_from_action_map(action_map: list[int], key_actions: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Keys for a world whose latent actions were mapped to real ones (``action_map[latent] = real``,
    as ``nextworld eval`` fits it): each key gets the first latent action whose real action is the
    key's meaning, trying the meanings best first; a key no latent action means stays unmapped."""
    controls = {}
    for key, meanings in key_actions.items():
        for real in meanings:
            latents = [latent for latent, mapped in enumerate(action_map) if mapped == real]
            if latents:
                controls[key] = latents[0]
                break
    return controls
