"""``training_state/``: everything an exact resume needs, written atomically, never pickled.

Layout::

    training_state/model.safetensors      the model's state_dict
    training_state/optimizer.safetensors  optimizer tensors, named "<param index>.<key>"
    training_state/rng.safetensors        per-rank generator states, named "<rank>.<generator>"
    training_state/state.json             step, world size, optimizer hyperparameters and
                                          scalars, data position, the configs trained with,
                                          the last logged metrics

A save writes a fresh ``.training_state.tmp-*`` directory, fsyncs it, then swaps it in
with two renames (old state aside, new state in); :func:`recover` puts the old state
back if a kill landed between the two. So at any instant the disk holds one complete
state, old or new.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

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
    _write_tensors(tmp / "model.safetensors", state.model)
    _write_tensors(tmp / "optimizer.safetensors", opt_tensors)
    _write_tensors(tmp / "rng.safetensors", rng_tensors)
    payload = {"step": state.step, "world_size": len(state.rng), "optimizer": opt_json, **state.meta}
    with open(tmp / "state.json", "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
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


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    # A copy per tensor: safetensors refuses tensors that share storage (tied weights, views).
    save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}, str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


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
    """Finish or undo a save that a kill interrupted, leaving only ``training_state``.

    Call from one process before any process loads.
    """
    final = run_dir / STATE_DIR
    olds = sorted(run_dir.glob(f"{_OLD_PREFIX}*"))
    if not final.exists() and olds:
        os.rename(olds.pop(), final)  # killed between the two renames: the old state (only one) is complete
    for leftover in [*olds, *run_dir.glob(f"{_TMP_PREFIX}*")]:
        shutil.rmtree(leftover)


def has_training_state(run_dir: Path) -> bool:
    return (run_dir / STATE_DIR / "state.json").is_file()


def read_state_json(run_dir: Path) -> dict[str, Any]:
    """The parsed ``training_state/state.json`` of a run; UserInputError when absent or broken."""
    path = run_dir / STATE_DIR / "state.json"
    if not path.is_file():
        raise UserInputError(
            f"{run_dir}: no {STATE_DIR}/ to resume from; delete the directory or choose another --out")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: not valid JSON ({e})") from None


def load_training_state(run_dir: Path) -> TrainingState:
    """Read ``run_dir/training_state`` (after :func:`recover`)."""
    meta = read_state_json(run_dir)
    state_dir = run_dir / STATE_DIR

    def tensors(name: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(state_dir / name))
        except (SafetensorError, OSError) as e:
            raise UserInputError(f"{state_dir / name}: not a readable safetensors file ({e})") from None

    rng_flat = tensors("rng.safetensors")
    rng: list[dict[str, torch.Tensor]] = [{} for _ in range(meta.pop("world_size"))]
    for name, t in rng_flat.items():
        rank, gen = name.split(".", 1)
        rng[int(rank)][gen] = t
    optimizer = _unflatten_optimizer(tensors("optimizer.safetensors"), meta.pop("optimizer"))
    return TrainingState(step=meta.pop("step"), model=tensors("model.safetensors"), optimizer=optimizer,
                         rng=rng, meta=meta)
