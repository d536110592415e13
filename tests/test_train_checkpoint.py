"""training_state/: round trips of optimizer and RNG state, atomic swap and its recovery, malformed states."""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from nextworld.errors import UserInputError
from nextworld.train import TrainConfig
from nextworld.train.checkpoint import (STATE_DIR, TrainingState, load_optimizer_state, load_training_state,
                                        read_state_json, recover, save_training_state)
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
    save_training_state(tmp_path / "elsewhere", _state(4))
    # What a kill after "old aside" and before "new in" leaves: the old state moved aside
    # and a complete new one still under its temporary name. The new one was never
    # renamed in, so the old one is the state to keep.
    os.rename(tmp_path / STATE_DIR, tmp_path / f".{STATE_DIR}.old-abc")
    os.rename(tmp_path / "elsewhere" / STATE_DIR, tmp_path / f".{STATE_DIR}.tmp-def")
    (tmp_path / "elsewhere").rmdir()
    recover(tmp_path)
    assert load_training_state(tmp_path).step == 3
    assert [p.name for p in tmp_path.iterdir()] == [STATE_DIR]


def test_readers_find_the_state_a_kill_left_aside_before_any_recover(tmp_path: Path):
    save_training_state(tmp_path, _state(3))
    os.rename(tmp_path / STATE_DIR, tmp_path / f".{STATE_DIR}.old-abc")
    assert read_state_json(tmp_path)["step"] == 3
    assert load_training_state(tmp_path).step == 3


def test_a_stale_old_state_beside_the_new_one_is_removed_not_restored(tmp_path: Path):
    # A kill after both renames, before the old state was deleted.
    save_training_state(tmp_path, _state(2))
    os.rename(tmp_path / STATE_DIR, tmp_path / f".{STATE_DIR}.old-abc")
    save_training_state(tmp_path, _state(3))
    assert load_training_state(tmp_path).step == 3  # readers take the new one too
    recover(tmp_path)
    assert load_training_state(tmp_path).step == 3
    assert [p.name for p in tmp_path.iterdir()] == [STATE_DIR]


def test_missing_state_is_a_user_error_that_never_suggests_deleting(tmp_path: Path):
    with pytest.raises(UserInputError, match="no training_state") as info:
        load_training_state(tmp_path)
    assert "delete" not in str(info.value)


def _one_line_error(match: str, read) -> None:
    with pytest.raises(UserInputError, match=match) as info:
        read()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key", ["step", "world_size", "optimizer"])
def test_state_json_without_a_key_is_a_one_line_error_naming_it(tmp_path: Path, key: str):
    save_training_state(tmp_path, _state(3))
    path = tmp_path / STATE_DIR / "state.json"
    payload = json.loads(path.read_text())
    del payload[key]
    path.write_text(json.dumps(payload))
    _one_line_error(rf"training_state/state.json: malformed \({key} missing\)", lambda: load_training_state(tmp_path))


def test_required_meta_keys_are_checked_by_the_reader(tmp_path: Path):
    save_training_state(tmp_path, _state(3))
    _one_line_error(r"state.json: malformed \(data.seed missing\)",
                    lambda: load_training_state(tmp_path, required_meta={"note": int, "data.seed": int}))
    _one_line_error(r"state.json: malformed \(note must be a str\)",
                    lambda: read_state_json(tmp_path, required={"note": str}))


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "rng.safetensors"])
def test_unreadable_tensors_are_a_one_line_error_naming_the_file(tmp_path: Path, name: str):
    save_training_state(tmp_path, _state(3))
    (tmp_path / STATE_DIR / name).write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}junk")
    _one_line_error(rf"training_state/{name}: not a readable safetensors file",
                    lambda: load_training_state(tmp_path))


def test_misnamed_optimizer_or_rng_tensors_are_a_one_line_error_naming_the_file(tmp_path: Path):
    save_training_state(tmp_path, _state(3))
    save_file({"nodot": torch.zeros(2)}, str(tmp_path / STATE_DIR / "optimizer.safetensors"))
    _one_line_error(r"training_state/optimizer.safetensors: malformed", lambda: load_training_state(tmp_path))
    save_training_state(tmp_path, _state(3))
    save_file({"5.torch": torch.zeros(2, dtype=torch.uint8)}, str(tmp_path / STATE_DIR / "rng.safetensors"))
    _one_line_error(r"training_state/rng.safetensors: malformed", lambda: load_training_state(tmp_path))


@pytest.mark.parametrize("change", [lambda o: o["param_groups"][0]["params"].pop(),  # a parameter fewer
                                    lambda o: o["state"][0].update(exp_avg=torch.zeros(7))],  # a wrong shape
                         ids=["groups", "shapes"])
def test_an_optimizer_state_that_does_not_fit_is_a_one_line_error_naming_the_file(change):
    broken = copy.deepcopy(_state(3).optimizer)
    change(broken)
    optimizer = build_optimizer(make_model(), TrainConfig(), CPU)
    path = Path("run") / STATE_DIR / "optimizer.safetensors"
    _one_line_error(r"run/training_state/optimizer.safetensors: does not fit the model's optimizer",
                    lambda: load_optimizer_state(optimizer, broken, path))


def test_recover_removes_files_a_kill_left_half_written(tmp_path: Path) -> None:
    from nextworld.atomic_files import remove_stale_temporaries
    from nextworld.train.checkpoint import recover

    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    stale = [run / ".model.safetensors.0123abcd.tmp", run / "samples" / ".tokenizer-0000010.png.ffee.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    keep = [run / "model.safetensors", run / ".hidden-note"]
    for p in keep:
        p.write_bytes(b"whole")
    recover(run)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert remove_stale_temporaries(run) == []
