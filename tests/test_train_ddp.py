"""Data parallelism: torchrun with 2 CPU processes (gloo) equals one process at the same global batch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_dataset
from nextworld.errors import UserInputError
from nextworld.train import TrainConfig, fit
from nextworld.train.distributed import init_distributed
from train_helpers import FAMILY, clips, logged_steps, make_model, state_weights, subprocess_env, training_command


def test_two_processes_match_one_at_the_same_global_batch(tmp_path: Path):
    data_dir = make_dataset(tmp_path / "ds", [20, 5, 33, 17, 40, 9])
    run = tmp_path / "ddp"
    # Each rank takes 4 of the 8 clips and accumulates them in 2 micro-batches (no_sync on the first).
    done = subprocess.run(training_command(data_dir, run, "--steps", "4", "--grad-accum", "2", "--dropout", "0",
                                           processes=2),
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = make_model(dropout=0.0)
        cfg = TrainConfig(steps=4, batch_size=8, lr=1e-2, warmup_steps=3, log_every=1, ckpt_every=10,
                          device="cpu", progress=False)
        fit(model, FAMILY, clips(data_dir), cfg, tmp_path / "single")
    finally:
        torch.set_num_threads(before)

    ddp_weights = state_weights(run)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], p, rtol=1e-5, atol=1e-5, msg=name)
    assert logged_steps(run) == [1, 2, 3, 4]  # rank 0 alone writes
    rng = load_file(str(run / "training_state" / "rng.safetensors"))
    assert {"0.torch", "1.torch"} <= rng.keys()  # every rank's generators are saved


def test_an_explicit_cuda_index_under_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch):
    # Every process would take that one GPU; each must take cuda:LOCAL_RANK instead.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UserInputError, match=r"device 'cuda:0': under torchrun use --device cuda or auto"):
        init_distributed("cuda:0")
