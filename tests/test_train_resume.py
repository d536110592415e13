"""Training subprocesses killed (SIGKILL) or interrupted (SIGINT), then resumed: same weights."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from conftest import make_dataset
from train_helpers import logged_steps, saved_step, state_weights, subprocess_env, training_command

STEPS = 30  # ckpt_every 10, log_every 1, dropout 0.1 (run_training's defaults)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("resume") / "ds", [20, 5, 33, 17, 40, 9])


@pytest.fixture(scope="module")
def reference(dataset: Path) -> dict[str, torch.Tensor]:
    """Final weights of an uninterrupted run."""
    run = dataset.parent / "reference"
    subprocess.run(training_command(dataset, run, "--steps", str(STEPS)), env=subprocess_env(), check=True,
                   capture_output=True, timeout=300)
    return state_weights(run)


def _start_slow_run(dataset: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen(training_command(dataset, run, "--steps", str(STEPS), "--seconds-per-loss", "0.05"),
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"training exited early with {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("training made no progress")
        time.sleep(0.02)


def _resume_to_the_end(dataset: Path, run: Path) -> None:
    done = subprocess.run(training_command(dataset, run, "--steps", str(STEPS), "--resume"), env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert saved_step(run) == STEPS


def _assert_same_weights(run: Path, reference: dict[str, torch.Tensor]) -> None:
    weights = state_weights(run)
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(weights[name], tensor), name


def test_resume_after_sigkill_matches_an_uninterrupted_run(dataset: Path, reference: dict[str, torch.Tensor]):
    run = dataset.parent / "killed"
    proc = _start_slow_run(dataset, run)
    _wait_until(lambda: saved_step(run) >= 10, proc)
    proc.kill()  # may land anywhere, including inside a later checkpoint write
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert 10 <= saved_step(run) < STEPS

    _resume_to_the_end(dataset, run)
    _assert_same_weights(run, reference)
    assert logged_steps(run) == list(range(1, STEPS + 1))  # records past the checkpoint were dropped
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors", "tb",
                                                      "training_state"]


def test_ctrl_c_saves_at_the_step_reached_and_resumes(dataset: Path, reference: dict[str, torch.Tensor]):
    run = dataset.parent / "interrupted"
    proc = _start_slow_run(dataset, run)
    _wait_until(lambda: len(logged_steps(run)) >= 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # run_training exits 130 when fit reports an interrupt
    reached = logged_steps(run)[-1]
    assert 3 <= reached < STEPS
    assert saved_step(run) == reached

    _resume_to_the_end(dataset, run)
    _assert_same_weights(run, reference)
