"""The action-conditioned JEPA world model, its collapse prevention, and train -> eval -> plan."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextworld.cli import main
from nextworld.data.frames import to_model_frames
from nextworld.data.sources.collect import CollectConfig, collect
from nextworld.data.windows import WindowSpec, open_clips
from nextworld.models.base import load_pretrained
from nextworld.models.jepa.regularizers import covariance_loss, sigreg_loss, variance_loss
from nextworld.models.jepa.training import JEPATrainConfig, train_jepa
from nextworld.models.jepa.world_model import JEPAWorldConfig, JEPAWorldModel

from cli_helpers import assert_one_line_error, run_cli


SMALL = JEPAWorldConfig(frame_shape=(16, 16, 3), widths=(8, 8), embed_dim=8, action_embed=4, predictor_hidden=16,
                        predictor_depth=1, rollout_steps=3)


def _batch(cfg: JEPAWorldConfig, b: int = 4) -> dict[str, torch.Tensor]:
    t = cfg.rollout_steps + 1
    h, w, c = cfg.frame_shape
    g = torch.Generator().manual_seed(0)
    actions = (torch.randint(0, cfg.action_dim, (b, t), generator=g) if cfg.action_kind == "discrete"
               else torch.rand(b, t, cfg.action_dim, generator=g) * 2 - 1)
    return {"frames": torch.randint(0, 256, (b, t, h, w, c), dtype=torch.uint8, generator=g),
            "actions": actions, "rewards": torch.rand(b, t, generator=g)}


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_shapes(kind: str) -> None:
    cfg = dataclasses.replace(SMALL, action_kind=kind, action_dim=2 if kind == "continuous" else 5,
                              action_low=(-1.0, -1.0) if kind == "continuous" else (),
                              action_high=(1.0, 1.0) if kind == "continuous" else (), reward_head=True)
    model = JEPAWorldModel(cfg)
    batch = _batch(cfg)
    frames = to_model_frames(batch["frames"])  # (B, T, C, H, W)
    z = model.encode(frames)
    assert z.shape == (4, 8)
    assert torch.allclose(z, model.embed(frames)[:, -1], atol=1e-6)
    pred = model.rollout(z, batch["actions"][:, :3])
    assert pred.shape == (4, 3, 8)
    nxt, prediction = model.step(z, batch["actions"][:, 0])
    assert torch.allclose(nxt, pred[:, 0]) and prediction.reward.shape == (4,)
    assert model.action_space.shape == ((2,) if kind == "continuous" else ())


@pytest.mark.parametrize("objective,regularizer", [("jepa", "vicreg"), ("jepa", "ema"), ("jepa", "sigreg"),
                                                   ("generative", "vicreg")])
def test_each_objective_trains(objective: str, regularizer: str) -> None:
    torch.manual_seed(0)
    model = JEPAWorldModel(dataclasses.replace(SMALL, objective=objective, regularizer=regularizer, reward_head=True))
    loss, metrics = model.loss(_batch(model.config))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.encoder.proj.weight.grad is not None and model.encoder.proj.weight.grad.abs().sum() > 0
    assert "losses/reward" in metrics and "losses/inverse_dynamics" in metrics
    if objective == "generative":
        assert "losses/pixels" in metrics
    if regularizer == "ema":
        assert all(p.grad is None for p in model.target_encoder.parameters())
        before = [p.clone() for p in model.target_encoder.parameters()]
        with torch.no_grad():
            for p in model.encoder.parameters():
                p.add_(1.0)
        model.after_optimizer_step(0, 10)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.target_encoder.parameters()))
    else:
        assert model.target_encoder is None


def test_regularizers_tell_collapse_from_spread() -> None:
    g = torch.Generator().manual_seed(0)
    gaussian = torch.randn(4096, 16, generator=g)
    collapsed = torch.zeros(4096, 16) + 0.01 * torch.randn(4096, 1, generator=g)
    assert variance_loss(gaussian) < 0.02 and variance_loss(collapsed) > 0.9
    assert covariance_loss(gaussian) < 0.01 and covariance_loss(collapsed.repeat(1, 1) * 100) > 1.0
    torch.manual_seed(0)
    assert sigreg_loss(gaussian) < 0.01
    torch.manual_seed(0)
    assert sigreg_loss(collapsed) > 10 * sigreg_loss(gaussian)
    torch.manual_seed(0)
    assert sigreg_loss(gaussian * 3) > 10 * sigreg_loss(gaussian)  # the wrong scale is not Gaussian N(0, 1) either


@pytest.fixture(scope="module")
def tworooms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tworooms")
    out = {}
    for name, seed, episodes in (("train", 0, 24), ("heldout", 50_000, 6)):
        out[name] = root / name
        collect(CollectConfig(source="tworooms", out=out[name], episodes=episodes, max_episode_steps=30,
                              policy="wandering", seed=seed, progress=False))
    return out


def _embedding_std(run: Path, data: Path) -> float:
    model = load_pretrained(run, family="jepa")
    clips = open_clips(data, WindowSpec(length=1, stride=5), keys=("frames",))
    frames = torch.stack([clips[i]["frames"] for i in range(len(clips))])
    with torch.no_grad():
        z = model.embed(to_model_frames(frames))[:, 0]
    return float(z.std(dim=0).mean())


def test_tiny_run_does_not_collapse_and_its_control_does(tworooms: dict[str, Path], tmp_path: Path,
                                                         one_thread) -> None:
    common = dict(data=tworooms["train"], steps=300, batch_size=16, ckpt_every=0, progress=False, device="cpu")
    train_jepa(JEPATrainConfig(out=tmp_path / "vicreg", **common))
    std = _embedding_std(tmp_path / "vicreg", tworooms["heldout"])
    assert std > 0.03  # held-out frames, after 300 steps; 0.059 when written
    # the control: the same run with no collapse prevention (no VICReg terms, no inverse dynamics)
    from nextworld.models.jepa import training

    plain = dataclasses.replace(training.WORLD_PRESETS["tiny"], variance_weight=0.0, covariance_weight=0.0,
                                inverse_dynamics=False)
    saved = training.WORLD_PRESETS["tiny"]
    training.WORLD_PRESETS["tiny"] = plain
    try:
        train_jepa(JEPATrainConfig(out=tmp_path / "plain", **common))
    finally:
        training.WORLD_PRESETS["tiny"] = saved
    assert _embedding_std(tmp_path / "plain", tworooms["heldout"]) < std / 5  # 0.0046 when written


def test_train_eval_plan_end_to_end(tworooms: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "jepa", "--data", str(tworooms["train"]), "--out", str(run), "--steps", "20",
                 "--batch-size", "8", "--no-progress"]) == 0
    eval_json = tmp_path / "eval.json"
    assert main(["eval", str(run), "--data", str(tworooms["heldout"]), "--json", str(eval_json)]) == 0
    metrics = json.loads(eval_json.read_text())
    for key in ("embedding_std_mean", "effective_rank", "probe_r2_position", "probe_r2_position_k4"):
        assert np.isfinite(metrics[key]), key
    assert main(["eval", str(run), "--data", str(tworooms["heldout"]), "--levels", "0:5"]) == 2  # a Genie option
    plan_json = tmp_path / "plan.json"
    assert main(["plan", str(run), "--env", "tworooms", "--episodes", "2", "--seed", "123", "--horizon", "4",
                 "--samples", "16", "--iterations", "1", "--max-steps", "6", "--json", str(plan_json),
                 "--no-progress"]) == 0
    result = json.loads(plan_json.read_text())
    assert set(result) >= {"success_rate", "mean_steps", "seconds_per_plan", "seconds_per_episode"}
    assert 0.0 <= result["success_rate"] <= 1.0 and result["mean_steps"] <= 6 and result["seconds_per_plan"] > 0
    assert result["seeds"] == [123, 125] and Path(result["paths"]).is_file()

    # the self-supervised video JEPA trains on the same data and is probed the same way
    video = tmp_path / "video"
    assert main(["train", "jepa", "--data", str(tworooms["train"]), "--out", str(video), "--model", "video",
                 "--steps", "3", "--batch-size", "2", "--no-progress"]) == 0
    assert main(["eval", str(video), "--data", str(tworooms["heldout"]), "--json", str(tmp_path / "v.json")]) == 0
    video_metrics = json.loads((tmp_path / "v.json").read_text())
    assert video_metrics["family"] == "jepa-video" and np.isfinite(video_metrics["probe_r2_position"])
    assert main(["plan", str(video), "--episodes", "1", "--no-progress"]) == 2  # not action-conditioned

    # bad input: one line each, exit 2
    small = tmp_path / "small.png"
    Image.new("RGB", (32, 32)).save(small)
    minigrid = "gym:MiniGrid-Empty-8x8-v0"
    assert_one_line_error(run_cli("plan", str(run), "--env", minigrid, "--goal", str(small)), "32x32", "64x64")
    assert_one_line_error(run_cli("plan", str(run), "--env", "tworooms", "--goal", str(small)), "--goal", "Two-Rooms")
    text = tmp_path / "goal.png"
    text.write_text("not an image")
    assert_one_line_error(run_cli("plan", str(run), "--env", minigrid, "--goal", str(text)), "not a readable image")
    assert_one_line_error(run_cli("plan", str(run), "--env", "gym:NoSuchEnv-v9"), "NoSuchEnv-v9")
    assert_one_line_error(run_cli("plan", str(run), "--env", "gym:MiniGrid-Empty-8x8-v0"), "action space")
    bad_planner = run_cli("plan", str(run), "--planner", "astar")
    assert bad_planner.returncode == 2 and "astar" in bad_planner.stderr
    assert_one_line_error(run_cli("plan", str(tmp_path / "nowhere")), "nowhere")


def test_resume_continues_the_run_and_refuses_another_model(tworooms: dict[str, Path], tmp_path: Path,
                                                            one_thread) -> None:
    run = tmp_path / "run"
    common = ["train", "jepa", "--data", str(tworooms["train"]), "--out", str(run), "--batch-size", "4",
              "--no-progress"]
    assert main([*common, "--steps", "3"]) == 0
    assert main([*common, "--steps", "5", "--resume"]) == 0
    assert json.loads((run / "training_state" / "state.json").read_text())["step"] == 5
    assert main([*common, "--steps", "6", "--resume", "--model", "video"]) == 2  # a jepa run, not jepa-video
