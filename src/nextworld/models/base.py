"""What every model family shares: the registry, the checkpoint format, the WorldModel face.

A checkpoint (a run directory, a stage of one, or a shipped world) is a directory with
``config.json`` and ``model.safetensors``::

    config.json = {"format": "nextworld", "version": "...", "family": "genie-tokenizer",
                   "config": {...the family's config dataclass...}, ...extra keys...}

Loading never unpickles: weights come from safetensors, configs from JSON into the
family's dataclass (unknown or missing fields are an error, not a silent default).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

import nextworld
from nextworld.atomic_files import write_json_atomic, write_safetensors_atomic
from nextworld.errors import UserInputError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


# ---------------------------------------------------------------------------- protocols


class Trainable(Protocol):
    """What the training engine needs from a model: an nn.Module with a loss.

    ``loss(batch)`` takes a batch of clips (see ``nextworld.data.windows.ClipDataset``,
    stacked along a leading batch dimension and already on the model's device) and
    returns ``(scalar loss, metrics)``; metric keys are namespaced (``losses/recon``,
    ``charts/codebook_usage``) and values are floats or 0-d tensors.

    The loss must be a mean over the batch's clips: gradient accumulation and DDP rely on
    it to match one large batch. Randomness must come from torch's global generators
    (which the engine checkpoints), never a private ``torch.Generator``, or resume is not exact.
    """

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]: ...

    # Optional: ``after_optimizer_step(step, total_steps)``, called under no_grad on every rank
    # after optimizer step ``step`` (from 0) of ``total_steps``, e.g. to move an EMA target
    # encoder. Whatever it changes must live in the state_dict (parameters or buffers) so
    # that checkpoints and resumes carry it.


@dataclass
class Prediction:
    """What one ``WorldModel.step`` predicts; a family fills the fields it has."""

    frames: torch.Tensor | None = None  # float [B, C, H, W] in [0, 1]
    tokens: torch.Tensor | None = None  # int64 [B, h, w]
    embedding: torch.Tensor | None = None  # float [B, D]
    reward: torch.Tensor | None = None  # float [B]
    continuation: torch.Tensor | None = None  # float [B], probability the episode goes on


@runtime_checkable
class WorldModel(Protocol):
    """The one face every family shows to play, planning, agents and evaluation.

    ``encode(frames [B, T, C, H, W]) -> state``; ``step(state, action [B] or [B, A])
    -> (state, Prediction)``; ``decode(state) -> frames [B, C, H, W]`` for families that
    generate pixels; ``action_space`` is a Gymnasium space.
    """

    action_space: gym.Space

    def encode(self, frames: torch.Tensor) -> Any: ...

    def step(self, state: Any, action: torch.Tensor) -> tuple[Any, Prediction]: ...


def check_action_space(model_space: gym.Space, env_space: gym.Space, env_name: str) -> None:
    """Refuse an env (or a dataset: ``env_name`` says what it is) whose actions are not those the model was
    trained on."""
    same = type(model_space) is type(env_space)
    if same and isinstance(env_space, gym.spaces.Discrete):
        same = int(env_space.n) == int(model_space.n) and int(env_space.start) == int(model_space.start)
    elif same and isinstance(env_space, gym.spaces.Box):
        same = (env_space.shape == model_space.shape and np.allclose(env_space.low, model_space.low)
                and np.allclose(env_space.high, model_space.high))
    if not same:
        raise UserInputError(f"{env_name}: its action space {env_space} is not the one the model was "
                             f"trained on ({model_space})")


# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    model_cls: type[nn.Module]


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, config_cls: type, model_cls: type[nn.Module]) -> None:
    """Make ``name`` loadable: ``model_cls(config_cls(**config_json))``."""
    _FAMILIES[name] = Family(name, config_cls, model_cls)


def get_family(name: str) -> Family:
    _import_builtin_families()
    if name not in _FAMILIES:
        raise UserInputError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES)) or 'none'}")
    return _FAMILIES[name]


def family_names() -> list[str]:
    _import_builtin_families()
    return sorted(_FAMILIES)


def _import_builtin_families() -> None:
    # Families register themselves on import; importing them here keeps models/ free of
    # a central list that every new family would have to edit.
    import importlib
    import pkgutil

    import nextworld.models as models_pkg

    for info in pkgutil.iter_modules(models_pkg.__path__):
        if info.ispkg:
            importlib.import_module(f"nextworld.models.{info.name}")


# ---------------------------------------------------------------------------- configs


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a JSON dict, recursing into nested dataclasses.

    Raises UserInputError naming ``where`` for unknown or missing fields.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise UserInputError(f"{where}: unknown fields {sorted(unknown)} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value, f"{where}.{name}")
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserInputError(f"{where}: {e}") from None


# ---------------------------------------------------------------------------- save / load


def save_pretrained(model: nn.Module, directory: str | Path, family: str,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` (which has ``.config``).

    Both files are written atomically; ``extra`` adds top-level keys to config.json
    (a run stores its resolved training config there).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(directory / WEIGHTS_NAME, model.state_dict(), metadata={"format": "pt"})
    payload = {"format": "nextworld", "version": nextworld.__version__, "family": family,
               "config": config_to_dict(model.config), **(extra or {})}
    write_json_atomic(directory / CONFIG_NAME, payload)
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory, checked to be ours."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise UserInputError(f"{path}: missing; {directory} is not a nextworld checkpoint")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(payload, dict) or payload.get("format") != "nextworld" or "family" not in payload:
        raise UserInputError(f"{path}: not a nextworld checkpoint config (no format/family keys)")
    if not isinstance(payload["family"], str) or not isinstance(payload.get("config"), dict):
        raise UserInputError(f"{path}: malformed nextworld checkpoint config (family must be a string, config an object)")
    return payload


def check_tensors_match(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], path: Path,
                        against: str = CONFIG_NAME) -> None:
    """Raise UserInputError naming ``path`` unless ``found`` has exactly the names and shapes of ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k].shape != found[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape of {k} is {list(found[k].shape)}, config needs {list(expected[k].shape)}")
        raise UserInputError(f"{path}: tensors do not match {against}: {'; '.join(parts)}")


def load_pretrained(directory: str | Path, family: str | None = None,
                    map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a checkpoint directory.

    Args:
        directory: holds config.json and model.safetensors.
        family: when given, the checkpoint must be of this family.
    Raises:
        UserInputError: not our checkpoint, another family, or tensors that do not match
        the config (missing, unexpected or differently shaped).
    """
    directory = Path(directory)
    payload = read_checkpoint_config(directory)
    if family is not None and payload["family"] != family:
        raise UserInputError(f"{directory}: a {payload['family']!r} checkpoint, expected {family!r}")
    fam = get_family(payload["family"])
    config = config_from_dict(fam.config_cls, payload["config"], f"{directory / CONFIG_NAME}")
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the caller's generator be
        model = fam.model_cls(config)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise UserInputError(f"{weights}: missing")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserInputError(f"{weights}: not a readable safetensors file ({e})") from None
    check_tensors_match(model.state_dict(), state, weights)
    model.load_state_dict(state)
    return model
