"""fit() in process: accumulation, exact resume, sampling, the export, run-dir and resume errors."""

from __future__ import annotations

import json
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_dataset
from nextworld.data.windows import ClipDataset
from nextworld.errors import UserInputError
from nextworld.models.base import load_pretrained
from nextworld.train import TrainConfig, fit, lr_at, saved_train_config
from nextworld.train.rng import derive_seed
from train_helpers import FAMILY, clips, make_model


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ClipDataset:
    return clips(make_dataset(tmp_path_factory.mktemp("ds") / "ds", [20, 5, 33, 17, 40, 9]))


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=8, lr=1e-2, warmup_steps=2, log_every=2, ckpt_every=3, device="cpu",
                progress=False)
    return TrainConfig(**{**base, **kw})


def _train(run_dir: Path, data: ClipDataset, cfg: TrainConfig, resume: bool = False, **model_kw):
    model = make_model(**model_kw)
    return model, fit(model, FAMILY, data, cfg, run_dir, resume=resume)


def test_accumulation_matches_one_big_batch(tmp_path: Path, data: ClipDataset):
    one, r1 = _train(tmp_path / "a1", data, _cfg(grad_accum=1), dropout=0.0)
    four, r4 = _train(tmp_path / "a4", data, _cfg(grad_accum=4), dropout=0.0)
    for (name, p), q in zip(one.named_parameters(), four.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # AdamW hides a uniformly scaled gradient; the logged (pre-clip) gradient norm does not.
    for key in ("charts/grad_norm", "losses/loss"):
        assert r4.metrics[key] == pytest.approx(r1.metrics[key], rel=1e-5), key


def test_ctrl_c_saves_and_resume_continues_bit_identically(tmp_path: Path, data: ClipDataset):
    straight, result = _train(tmp_path / "straight", data, _cfg(steps=8))
    assert result.steps == 8 and not result.interrupted

    model = make_model()  # dropout on: the RNG must be restored too
    calls = 0

    def loss_then_ctrl_c(batch):
        nonlocal calls
        calls += 1
        if calls == 5:  # Ctrl-C during step 5: it finishes, is saved, and fit returns
            signal.raise_signal(signal.SIGINT)
        return type(model).loss(model, batch)

    model.loss = loss_then_ctrl_c
    first = fit(model, FAMILY, data, _cfg(steps=8), tmp_path / "split")
    assert first.interrupted and first.steps == 5
    assert json.loads((tmp_path / "split" / "training_state" / "state.json").read_text())["step"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    resumed, second = _train(tmp_path / "split", data, _cfg(steps=8), resume=True)
    assert second.steps == 8 and not second.interrupted
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name
    assert second.metrics["losses/loss"] == result.metrics["losses/loss"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 5, 6, 8]


def test_dataloader_workers_feed_the_same_batches(tmp_path: Path, data: ClipDataset):
    inline, _ = _train(tmp_path / "inline", data, _cfg(steps=3))
    workers, _ = _train(tmp_path / "workers", data, _cfg(steps=3, num_workers=2))
    for p, q in zip(inline.parameters(), workers.parameters()):
        assert torch.equal(p, q)


def test_sampling_at_checkpoints_does_not_change_training(tmp_path: Path, data: ClipDataset):
    calls = []

    def sample_fn(model: torch.nn.Module, step: int, out: Path) -> None:
        assert not model.training and not torch.is_grad_enabled()
        calls.append(step)
        torch.rand(5), np.random.rand(), random.random()  # draws must not leak into training
        (out / f"step{step}.txt").write_text("sample")

    plain, _ = _train(tmp_path / "plain", data, _cfg())
    model = make_model()
    fit(model, FAMILY, data, _cfg(), tmp_path / "sampled", sample_fn=sample_fn)
    assert calls == [3, 6] and model.training
    assert sorted(p.name for p in (tmp_path / "sampled" / "samples").iterdir()) == ["step3.txt", "step6.txt"]
    for p, q in zip(plain.parameters(), model.parameters()):
        assert torch.equal(p, q)


def test_run_dir_holds_export_metrics_and_tensorboard(tmp_path: Path, data: ClipDataset):
    run = tmp_path / "run"
    model = make_model()
    result = fit(model, FAMILY, data, _cfg(), run, extra_config={"data": {"path": "somewhere"}})
    config = json.loads((run / "config.json").read_text())
    assert config["family"] == FAMILY and config["train"]["steps"] == 6
    assert config["data"] == {"path": "somewhere"}
    assert saved_train_config(run) == _cfg()
    exported = load_pretrained(run, family=FAMILY)
    for p, q in zip(model.parameters(), exported.parameters()):
        assert torch.equal(p, q)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("losses/loss", "losses/mse", "charts/pred_mean", "charts/lr", "charts/grad_norm",
                "perf/clips_per_second", "perf/seconds_per_step"):
        assert key in record and key in result.metrics
    assert record["step"] == 6 and record["charts/lr"] == lr_at(5, _cfg())  # the last step's
    assert any((run / "tb").glob("events.out.tfevents.*"))


def test_fresh_run_into_a_non_empty_dir_is_refused(tmp_path: Path, data: ClipDataset):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"run: exists; pass --resume or choose another --out"):
        _train(tmp_path / "run", data, _cfg())


def test_resume_without_training_state_is_refused(tmp_path: Path, data: ClipDataset):
    with pytest.raises(UserInputError, match=r"run: no training_state/"):
        _train(tmp_path / "run", data, _cfg(), resume=True)


def test_resume_with_another_model_config_is_refused(tmp_path: Path, data: ClipDataset):
    _train(tmp_path / "run", data, _cfg(steps=1))
    with pytest.raises(UserInputError, match=r"run: its model config differs .* in width"):
        _train(tmp_path / "run", data, _cfg(steps=2), resume=True, width=4)


def test_resume_with_other_data_is_refused(tmp_path: Path, data: ClipDataset):
    _train(tmp_path / "run", data, _cfg(steps=1))
    other = clips(make_dataset(tmp_path / "other", [30, 30]))
    with pytest.raises(UserInputError, match=r"run: trained on 106 clips, the given data has 54"):
        _train(tmp_path / "run", other, _cfg(steps=2), resume=True)


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory: pytest.TempPathFactory, data: ClipDataset) -> Path:
    """A run of one step (copy it before changing it)."""
    run = tmp_path_factory.mktemp("one_step") / "run"
    fit(make_model(), FAMILY, data, _cfg(steps=1), run)
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _edit_state_json(run: Path, edit) -> None:
    path = run / "training_state" / "state.json"
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))


def test_a_kill_between_the_state_renames_loses_nothing(tmp_path: Path, data: ClipDataset, one_step_run: Path):
    run = _copy(one_step_run, tmp_path)
    (run / "training_state").rename(run / ".training_state.old-abc")
    (run / ".training_state.tmp-def").mkdir()
    assert saved_train_config(run) == _cfg(steps=1)  # read before fit recovers, as the Genie recipe does
    _, result = _train(run, data, _cfg(steps=2), resume=True)
    assert result.steps == 2
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors", "tb",
                                                      "training_state"]


@pytest.mark.parametrize("change, message", [
    (dict(seed=1), r"run: trained with train.seed 0, the given config has 1"),
    (dict(batch_size=4), r"run: trained with train.batch_size 8, the given config has 4"),
], ids=["seed", "batch_size"])
def test_resume_with_another_batch_order_is_refused(tmp_path: Path, data: ClipDataset, one_step_run: Path,
                                                     change: dict, message: str):
    run = _copy(one_step_run, tmp_path)
    with pytest.raises(UserInputError, match=message):
        _train(run, data, _cfg(steps=2, **change), resume=True)


def test_resume_with_other_data_of_the_same_size_is_refused(tmp_path: Path, data: ClipDataset, one_step_run: Path):
    run = _copy(one_step_run, tmp_path)
    other = clips(make_dataset(tmp_path / "other", [20, 5, 33, 17, 40, 9], seed=1))  # other actions and rewards
    assert len(other) == len(data)
    with pytest.raises(UserInputError, match=r"run: the given data differ from those it was trained on \(data "
                                             r"fingerprint"):
        _train(run, other, _cfg(steps=2), resume=True)
    _edit_state_json(run, lambda payload: payload["data"].pop("fingerprint"))  # a state saved before fingerprints
    _, result = _train(run, other, _cfg(steps=2), resume=True)
    assert result.steps == 2


@pytest.mark.parametrize("key", ["family", "model_config", "train", "data"])
def test_resume_from_a_state_json_without_a_key_is_refused(tmp_path: Path, data: ClipDataset, one_step_run: Path,
                                                           key: str):
    run = _copy(one_step_run, tmp_path)
    _edit_state_json(run, lambda payload: payload.pop(key))
    with pytest.raises(UserInputError, match=rf"run/training_state/state.json: malformed \({key} missing\)") as info:
        _train(run, data, _cfg(steps=2), resume=True)
    assert "\n" not in str(info.value)
    if key == "train":
        with pytest.raises(UserInputError, match=r"state.json: malformed \(train missing\)"):
            saved_train_config(run)


def test_resume_from_weights_that_do_not_fit_the_model_is_refused(tmp_path: Path, data: ClipDataset,
                                                                  one_step_run: Path):
    run = _copy(one_step_run, tmp_path)
    path = run / "training_state" / "model.safetensors"
    weights = load_file(str(path))
    weights["out.weight"] = weights["out.weight"][:, :2].contiguous()
    save_file(weights, str(path))
    with pytest.raises(UserInputError, match=r"run/training_state/model.safetensors: tensors do not match "
                                             r"the model config: shape of out.weight"):
        _train(run, data, _cfg(steps=2), resume=True)


def test_resume_from_optimizer_moments_that_do_not_fit_is_refused(tmp_path: Path, data: ClipDataset,
                                                                  one_step_run: Path):
    run = _copy(one_step_run, tmp_path)
    path = run / "training_state" / "optimizer.safetensors"
    moments = load_file(str(path))
    moments["0.exp_avg"] = torch.zeros(3)
    save_file(moments, str(path))
    with pytest.raises(UserInputError, match=r"run/training_state/optimizer.safetensors: does not fit"):
        _train(run, data, _cfg(steps=2), resume=True)


def test_per_process_seeds_never_collide_across_runs():
    # seed + rank would give seed 1 rank 0 the stream of seed 0 rank 1.
    seeds = {derive_seed(seed, rank) for seed in range(16) for rank in range(16)}
    assert len(seeds) == 16 * 16
    resumed = {derive_seed(seed, rank, step) for seed in range(4) for rank in range(4) for step in range(4)}
    assert len(resumed) == 4 * 4 * 4 and not resumed & seeds
    assert derive_seed(3, 1) == derive_seed(3, 1)
