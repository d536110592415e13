"""training_state/: round trips of optimizer and RNG state, atomic swap and its recovery."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nextworld.errors import UserInputError
from nextworld.train import TrainConfig
from nextworld.train.checkpoint import (STATE_DIR, TrainingState, load_training_state, recover,
                                        save_training_state)
from nextworld.train.optim import build_optimizer
from nextworld.train.rng import capture_rng, restore_rng
from train_helpers import make_model

CPU = torch.device("cpu")


def _draws() -> tuple:
    return random.random(), random.gauss(0, 1), np.random.rand(), np.random.normal(), torch.rand(3).tolist()


def _state(step: int) -> TrainingState:
    model = make_model(seed=step)
    opt = build_optimizer(model, TrainConfig(), CPU)
    loss, _ = model.loss({"frames": torch.randint(0, 255, (2, 4, 16, 16, 3), dtype=torch.uint8),
                          "actions": torch.randint(0, 4, (2, 4))})
    loss.backward()
    opt.step()
    return TrainingState(step, model.state_dict(), opt.state_dict(), [capture_rng(CPU)], {"note": step})


def test_rng_capture_restore_replays_every_generator():
    random.gauss(0, 1)  # leave a cached gaussian in python's generator
    np.random.normal()
    state = capture_rng(CPU)
    first = _draws()
    restore_rng(state, CPU)
    assert _draws() == first


def test_training_state_round_trips_and_holds_no_pickles(tmp_path: Path):
    saved = _state(7)
    save_training_state(tmp_path, saved)
    assert sorted(p.name for p in (tmp_path / STATE_DIR).iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    loaded = load_training_state(tmp_path)
    assert loaded.step == 7 and loaded.meta == {"note": 7}
    assert all(torch.equal(loaded.model[k], v) for k, v in saved.model.items())
    model = make_model()
    opt = build_optimizer(model, TrainConfig(), CPU)
    opt.load_state_dict(loaded.optimizer)  # torch accepts the rebuilt structure
    for index, per_param in saved.optimizer["state"].items():
        for key, value in per_param.items():
            assert torch.equal(opt.state_dict()["state"][index][key], value)
    assert opt.state_dict()["param_groups"] == saved.optimizer["param_groups"]
    restore_rng(loaded.rng[0], CPU)
    expected = _draws()
    restore_rng(saved.rng[0], CPU)
    assert _draws() == expected


def test_a_new_save_replaces_the_old_without_leftovers(tmp_path: Path):
    save_training_state(tmp_path, _state(1))
    save_training_state(tmp_path, _state(2))
    assert load_training_state(tmp_path).step == 2
    assert [p.name for p in tmp_path.iterdir()] == [STATE_DIR]


def test_recover_after_a_kill_between_the_two_renames(tmp_path: Path):
    save_training_state(tmp_path, _state(3))
    # What a kill after "old aside" and before "new in" leaves: the old state moved aside
    # and a complete new one still under its temporary name.
    os.rename(tmp_path / STATE_DIR, tmp_path / f".{STATE_DIR}.old-abc")
    (tmp_path / f".{STATE_DIR}.tmp-def").mkdir()
    recover(tmp_path)
    assert load_training_state(tmp_path).step == 3
    assert [p.name for p in tmp_path.iterdir()] == [STATE_DIR]


def test_missing_state_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserInputError, match="no training_state"):
        load_training_state(tmp_path)
