"""``training_state/``: everything an exact resume needs, written atomically, never pickled.

Layout::

    training_state/model.safetensors      the model's state_dict
    training_state/optimizer.safetensors  optimizer tensors, named "<param index>.<key>"
    training_state/rng.safetensors        per-rank generator states, named "<rank>.<generator>"
    training_state/state.json             step, world size, optimizer hyperparameters and
                                          scalars, data position, the configs trained with,
                                          the last logged metrics

A save writes a fresh ``.training_state.tmp-*`` directory, fsyncs it, then swaps it in
with two renames (old state aside, new state in). So at any instant the disk holds one
complete state, old or new: ``training_state/`` if it exists, else the one
``.training_state.old-*`` a kill between the two renames left. The readers here take it
from wherever it is, without moving anything (so any process may read, any time);
:func:`recover`, called by one process before a run resumes, moves it back into place and
removes leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from nextworld.atomic_files import remove_stale_temporaries, write_json_atomic, write_safetensors_atomic
from nextworld.errors import UserInputError

STATE_DIR = "training_state"
_TMP_PREFIX = f".{STATE_DIR}.tmp-"
_OLD_PREFIX = f".{STATE_DIR}.old-"


@dataclass
class TrainingState:
    """One resumable point of a run."""

    step: int
    """Optimizer steps done."""
    model: dict[str, torch.Tensor]
    """The model's state_dict."""
    optimizer: dict[str, Any]
    """The optimizer's state_dict (torch's structure)."""
    rng: list[dict[str, torch.Tensor]]
    """Generator states of each rank (see nextworld.train.rng)."""
    meta: dict[str, Any]
    """JSON-able rest: family, model and train configs, data position, metrics."""


# ---------------------------------------------------------------------------- save


def save_training_state(run_dir: Path, state: TrainingState) -> None:
    """Write ``run_dir/training_state`` atomically (see the module docstring)."""
    tmp = run_dir / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    opt_tensors, opt_json = _flatten_optimizer(state.optimizer)
    rng_tensors = {f"{rank}.{name}": t for rank, gens in enumerate(state.rng) for name, t in gens.items()}
    write_safetensors_atomic(tmp / "model.safetensors", state.model)
    write_safetensors_atomic(tmp / "optimizer.safetensors", opt_tensors)
    write_safetensors_atomic(tmp / "rng.safetensors", rng_tensors)
    write_json_atomic(tmp / "state.json",
                      {"step": state.step, "world_size": len(state.rng), "optimizer": opt_json, **state.meta})
    _fsync_dir(tmp)

    final = run_dir / STATE_DIR
    if final.exists():
        old = run_dir / f"{_OLD_PREFIX}{uuid.uuid4().hex}"
        os.rename(final, old)
        os.rename(tmp, final)
        _fsync_dir(run_dir)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
        _fsync_dir(run_dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a torch optimizer state_dict into named tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    # JSON turned tuples (betas) into lists; params stays a list of indices.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------- load


def recover(run_dir: Path) -> None:
    """Finish or undo a save that a kill interrupted, leaving only ``training_state`` and complete files.

    Call from one process, while no other process reads or writes the run.
    """
    final = run_dir / STATE_DIR
    aside = _aside_state(run_dir)
    if aside is not None:
        os.rename(aside, final)  # killed between the two renames: the old state is the complete one
    # Left by a kill: a new state never renamed in, or an old one (beside a complete new one) not yet deleted.
    for leftover in [*run_dir.glob(f"{_OLD_PREFIX}*"), *run_dir.glob(f"{_TMP_PREFIX}*")]:
        shutil.rmtree(leftover)
    for directory in (run_dir, run_dir / "samples"):  # an export or a picture killed mid-write
        if directory.is_dir():
            remove_stale_temporaries(directory)


def _aside_state(run_dir: Path) -> Path | None:
    """The old state a kill between the two renames left, when ``training_state`` is missing."""
    if (run_dir / STATE_DIR).exists():
        return None
    olds = sorted(run_dir.glob(f"{_OLD_PREFIX}*"))  # only one: recover runs before every resumed run's saves
    return olds[-1] if olds else None


def _state_dir(run_dir: Path) -> Path:
    """Where the complete training state of ``run_dir`` is now (see the module docstring)."""
    final = run_dir / STATE_DIR
    aside = _aside_state(run_dir)
    if aside is not None:
        return aside
    if not final.is_dir():
        raise UserInputError(f"{run_dir}: no {STATE_DIR}/ to resume from; start a new run without --resume "
                             "(into another --out if this one holds files)")
    return final


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _check_keys(payload: dict[str, Any], required: Mapping[str, type], path: Path) -> None:
    """UserInputError naming ``path`` unless each dotted key of ``required`` is there with its type."""
    for dotted, kind in required.items():
        value: Any = payload
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            raise UserInputError(f"{path}: malformed ({dotted} missing)")
        if not isinstance(value, kind):
            raise UserInputError(f"{path}: malformed ({dotted} must be a {kind.__name__})")


_OWN_KEYS: dict[str, type] = {"step": int, "world_size": int, "optimizer": dict, "optimizer.param_groups": list,
                              "optimizer.scalars": dict}
"""What save_training_state itself puts in state.json besides the caller's meta."""


def _read_json(state_dir: Path, required: Mapping[str, type]) -> dict[str, Any]:
    path = state_dir / "state.json"
    try:
        payload = json.loads(path.read_text())
    except OSError as e:
        raise UserInputError(f"{path}: not readable ({_one_line(e)})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: not valid JSON ({_one_line(e)})") from None
    if not isinstance(payload, dict):
        raise UserInputError(f"{path}: malformed (not a JSON object)")
    _check_keys(payload, required, path)
    return payload


def read_state_json(run_dir: Path, required: Mapping[str, type] | None = None) -> dict[str, Any]:
    """The parsed ``state.json`` of a run's training state.

    Args:
        required: dotted keys (``"data.seed"``) that must be there, with their types.
    Raises:
        UserInputError: no training state, or a state.json unreadable, not JSON, or
            without a required key.
    """
    return _read_json(_state_dir(run_dir), required or {})


def load_training_state(run_dir: Path, required_meta: Mapping[str, type] | None = None) -> TrainingState:
    """Read a run's training state (see :func:`read_state_json` for ``required_meta``).

    Raises:
        UserInputError: as read_state_json, or a file that is not readable safetensors or
            holds tensors under names this module does not write.
    """
    state_dir = _state_dir(run_dir)
    meta = _read_json(state_dir, {**_OWN_KEYS, **(required_meta or {})})

    def tensors(name: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(state_dir / name))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserInputError(f"{state_dir / name}: not a readable safetensors file ({_one_line(e)})") from None

    rng: list[dict[str, torch.Tensor]] = [{} for _ in range(meta.pop("world_size"))]
    try:
        for name, t in tensors("rng.safetensors").items():
            rank, gen = name.split(".", 1)
            rng[int(rank)][gen] = t
    except (ValueError, IndexError):
        raise UserInputError(f"{state_dir / 'rng.safetensors'}: malformed (tensor {name!r} is not "
                             f"'<rank>.<generator>' with a rank below the saved world size {len(rng)})") from None
    opt_path = state_dir / "optimizer.safetensors"
    try:
        optimizer = _unflatten_optimizer(tensors("optimizer.safetensors"), meta.pop("optimizer"))
    except (ValueError, TypeError, AttributeError) as e:
        raise UserInputError(f"{opt_path}: malformed, or does not match state.json's optimizer entry "
                             f"({_one_line(e)})") from None
    return TrainingState(step=meta.pop("step"), model=tensors("model.safetensors"), optimizer=optimizer,
                         rng=rng, meta=meta)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any], path: Path) -> None:
    """``optimizer.load_state_dict(state_dict)``, with a UserInputError naming ``path`` when it does not fit.

    Beyond torch's own checks (groups and parameter counts), every per-parameter state
    tensor that is not a scalar must have its parameter's shape (true of Adam's moments).
    """
    try:
        optimizer.load_state_dict(state_dict)
    except (ValueError, KeyError, RuntimeError, TypeError) as e:
        raise UserInputError(f"{path}: does not fit the model's optimizer ({_one_line(e)})") from None
    for index, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                raise UserInputError(f"{path}: does not fit the model's optimizer ({index}.{key} has shape "
                                     f"{list(value.shape)}, its parameter {list(param.shape)})")
