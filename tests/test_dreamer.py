"""Dreamer: the RSSM, two-hot regression, λ-returns, KL balancing, the replay buffer, a tiny online run."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from nextworld.agents.dreamer import DreamerTrainConfig, evaluate_agent, train_dreamer
from nextworld.cli import main
from nextworld.data.episodes import EpisodeDataset
from nextworld.data.replay import Replay, episode_to_steps, steps_to_episode
from nextworld.errors import UserInputError
from nextworld.models.base import load_pretrained
from nextworld.models.dreamer import DreamerAgent, DreamerConfig
from nextworld.models.dreamer.behavior import lambda_returns
from nextworld.models.dreamer.world_model import kl_balance_terms
from nextworld.nn.twohot import TwoHot, symexp, symlog

from cli_helpers import assert_one_line_error, run_cli

SMALL = DreamerConfig(depth=4, deter=32, hidden=32, stoch=4, classes=4, units=32, layers=1, num_bins=31, horizon=3,
                      frame_size=16)


def _batch(cfg: DreamerConfig, b: int = 2, t: int = 5, discrete: bool = True) -> dict[str, torch.Tensor]:
    s = cfg.frame_size
    actions = torch.randint(0, 7, (b, t)) if discrete else torch.rand(b, t, 2) * 2 - 1
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    return {"frames": torch.randint(0, 256, (b, t, s, s, 3), dtype=torch.uint8), "prev_actions": actions,
            "rewards": torch.rand(b, t), "is_first": is_first, "is_terminal": torch.zeros(b, t, dtype=torch.bool)}


def test_symlog_symexp_are_inverse() -> None:
    x = torch.tensor([-1e6, -123.4, -1.0, -1e-3, 0.0, 1e-3, 0.5, 7.0, 1e5])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5, atol=1e-6)
    assert torch.allclose(symlog(symexp(x.clamp(-20, 20))), x.clamp(-20, 20), rtol=1e-5, atol=1e-5)
    assert symlog(torch.tensor(1e6)) < 14  # large values compressed


def test_two_hot_round_trip() -> None:
    twohot = TwoHot(255)
    y = torch.tensor([-300.0, -2.5, -0.01, 0.0, 0.3, 1.0, 42.0, 1e4])
    weights = twohot.encode(y)
    assert torch.allclose(weights.sum(-1), torch.ones(len(y)))
    assert ((weights > 0).sum(-1) <= 2).all()  # two-hot
    assert torch.allclose((weights * twohot.bins).sum(-1), symlog(y), atol=1e-5)
    # logits that put exactly these weights on the bins decode back to y
    logits = torch.log(weights.clamp_min(1e-30))
    assert torch.allclose(twohot.decode(logits), y, rtol=1e-4, atol=1e-4)
    # the loss is smallest at the target's own two-hot logits
    assert twohot.loss(logits, y).mean() < twohot.loss(torch.zeros_like(logits), y).mean()


def test_lambda_returns_match_a_hand_computed_case() -> None:
    rewards = torch.tensor([[1.0], [0.0], [2.0]])  # r_1, r_2, r_3
    conts = torch.tensor([[1.0], [0.5], [1.0]])  # c_1, c_2, c_3
    values = torch.tensor([[0.0], [1.0], [2.0], [4.0]])  # v_0 .. v_3
    gamma, lam = 0.9, 0.5
    # by hand: R_3 = v_3 = 4
    r2 = 2.0 + 0.9 * 1.0 * (0.5 * 4.0 + 0.5 * 4.0)  # = 5.6
    r1 = 0.0 + 0.9 * 0.5 * (0.5 * 2.0 + 0.5 * r2)  # = 1.71
    r0 = 1.0 + 0.9 * 1.0 * (0.5 * 1.0 + 0.5 * r1)  # = 2.2195
    out = lambda_returns(rewards, conts, values, gamma, lam)
    assert torch.allclose(out[:, 0], torch.tensor([r0, r1, r2]), atol=1e-6)
    # λ = 0: one-step TD targets; λ = 1: discounted Monte-Carlo returns bootstrapped at the end
    td = lambda_returns(rewards, conts, values, gamma, 0.0)[:, 0]
    assert torch.allclose(td, rewards[:, 0] + gamma * conts[:, 0] * values[1:, 0])


def test_kl_balancing_sends_each_term_to_its_side() -> None:
    torch.manual_seed(0)
    post_raw = torch.randn(3, 4, 5, requires_grad=True)
    prior_raw = torch.randn(3, 4, 5, requires_grad=True)
    post, prior = post_raw.log_softmax(-1), prior_raw.log_softmax(-1)
    dyn, rep = kl_balance_terms(post, prior, free_nats=0.0)
    g_post, g_prior = torch.autograd.grad(dyn, (post_raw, prior_raw), allow_unused=True, retain_graph=True)
    assert g_post is None or g_post.abs().max() == 0  # dynamics: trains the prior only
    assert g_prior.abs().max() > 0
    g_post, g_prior = torch.autograd.grad(rep, (post_raw, prior_raw), allow_unused=True)
    assert g_post.abs().max() > 0  # representation: trains the posterior only
    assert g_prior is None or g_prior.abs().max() == 0
    assert torch.allclose(dyn, rep)  # same value, different gradients
    # free bits: below the threshold neither term sends any gradient
    dyn, rep = kl_balance_terms(post_raw.log_softmax(-1), prior_raw.log_softmax(-1), free_nats=1e3)
    assert dyn.item() == 1e3
    assert torch.autograd.grad(dyn, prior_raw)[0].abs().max() == 0


@pytest.mark.parametrize("discrete", [True, False])
def test_rssm_and_heads_shapes(discrete: bool) -> None:
    space = {"type": "discrete", "n": 7} if discrete else {"type": "box", "shape": [2], "low": [-1, -1], "high": [1, 1]}
    cfg = DreamerConfig(**{**SMALL.__dict__, "action_space": space})
    agent = DreamerAgent(cfg)
    wm = agent.world_model
    batch = _batch(cfg, discrete=discrete)
    loss, metrics, post = wm.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert post["h"].shape == (2, 5, cfg.deter) and post["z"].shape == (2, 5, cfg.stoch * cfg.classes)
    z = post["z"].view(2, 5, cfg.stoch, cfg.classes)
    assert torch.allclose(z.detach().sum(-1), torch.ones(2, 5, cfg.stoch))  # one-hot per variable
    actor_loss, critic_loss, _ = agent.behavior_losses(post, batch["is_terminal"])
    assert actor_loss.dim() == 0 and critic_loss.dim() == 0
    feats, actions = agent.imagine(post["h"].flatten(0, 1).detach(), post["z"].flatten(0, 1).detach())
    assert feats.shape == (cfg.horizon + 1, 10, wm.feat_dim) and actions.shape == (cfg.horizon, 10, wm.action_dim)
    # the WorldModel face
    frames = batch["frames"].movedim(-1, -3).float() / 255
    state = wm.encode(frames)
    action = torch.tensor([3, 1]) if discrete else torch.zeros(2, 2)
    state, pred = wm.step(state, action)
    assert pred.frames.shape == (2, 3, 16, 16) and pred.reward.shape == (2,) and pred.continuation.shape == (2,)
    assert wm.decode(state).shape == (2, 3, 16, 16)


def test_world_model_loss_falls_on_one_batch() -> None:
    torch.manual_seed(0)
    wm = DreamerAgent(SMALL).world_model
    batch = _batch(SMALL, b=2, t=6)
    colours = torch.randint(0, 256, (2, 6, 1, 1, 3), dtype=torch.uint8)
    batch["frames"] = colours.expand(2, 6, 16, 16, 3).clone()  # learnable: one colour per frame
    opt = torch.optim.Adam(wm.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss, _, _ = wm.loss(batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_replay_round_trips_through_the_dataset_format(tmp_path: Path) -> None:
    space = gym.spaces.Discrete(3)
    replay = Replay((4, 4, 3), space, capacity=100, initial=2)
    rng = np.random.default_rng(0)
    episodes = [(5, True), (3, False)]  # (actions, ends by termination?)
    for length, terminal in episodes:
        replay.add(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), 0, 0.0, True, False, False)
        for t in range(length):
            last = t == length - 1
            replay.add(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), int(rng.integers(3)), float(t),
                       False, last and terminal, last)
    assert replay.size == 10
    before = {k: v[:replay.size].copy() for k, v in replay._arrays.items()}
    assert replay.flush(tmp_path / "replay", fps=15, source={"kind": "test"}) == 2
    data = EpisodeDataset(tmp_path / "replay")
    assert len(data) == 2 and data.num_frames == 10
    ep = data.episode(0)
    assert ep.terminations.tolist() == [False, False, False, False, True, False]
    assert data.episode(1).truncations.tolist() == [False, False, True, False]
    assert ep.rewards[:5].tolist() == [0, 1, 2, 3, 4]
    # appending keeps the earlier episodes
    replay.add(np.zeros((4, 4, 3), np.uint8), 0, 0.0, True, False, False)
    replay.add(np.ones((4, 4, 3), np.uint8), 2, 1.0, False, True, True)
    assert replay.flush(tmp_path / "replay", fps=15, source={"kind": "test"}) == 1
    assert len(EpisodeDataset(tmp_path / "replay")) == 3
    # reloading rebuilds the same stream
    again = Replay((4, 4, 3), space, capacity=100)
    again.load(tmp_path / "replay")
    for key, value in before.items():
        assert np.array_equal(again._arrays[key][:10], value), key
    assert [s["is_last"] for s in episode_to_steps(steps_to_episode(
        [dict(frames=np.zeros((4, 4, 3), np.uint8), prev_actions=np.int64(0), rewards=0.0, is_first=i == 0,
              is_terminal=False, is_last=i == 2) for i in range(3)], True, space))] == [False, False, True]


def test_replay_samples_across_episodes_and_wraps() -> None:
    replay = Replay((2, 2, 3), gym.spaces.Discrete(2), capacity=8, initial=2)
    for i in range(20):
        replay.add(np.full((2, 2, 3), i, np.uint8), 1, float(i), i % 3 == 0, False, i % 3 == 2)
    assert replay.size == 8
    batch = replay.sample(16, 4, np.random.default_rng(0))
    values = batch["frames"][:, :, 0, 0, 0].astype(int)
    assert values.min() >= 12  # only the newest 8 rows are left
    assert (np.diff(values, axis=1) == 1).all()  # consecutive steps, in order
    assert batch["is_first"][:, 0].all()


def test_tiny_online_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nextworld.agents import dreamer

    small = dreamer.DreamerRecipe(batch_size=2, seq_len=8, prefill=110)
    monkeypatch.setitem(dreamer.PRESETS, "tiny", (DreamerConfig(**{**SMALL.__dict__, "frame_size": 64}), small))
    cfg = DreamerTrainConfig(env="gym:MiniGrid-Empty-5x5-v0", out=tmp_path / "run", env_steps=130, train_ratio=4.0,
                             eval_every=130, eval_episodes=1, ckpt_every=50, log_every=20, progress=False)
    result = train_dreamer(cfg)
    assert result.env_steps == 130 and result.updates == 5  # (130 - 110) steps x 4 / (2 x 8), from step 110 on
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 130 and "eval/success_rate" in records[-1] and "losses/model" in records[-1]
    replay = EpisodeDataset(run / "replay")
    assert replay.action_space == gym.spaces.Discrete(7) and replay.frame_shape == (64, 64, 3)
    assert len(replay) >= 1 and replay.episode(0).truncations[-2]  # MiniGrid-Empty-5x5 cuts episodes at 100 steps
    agent = load_pretrained(run, "dreamer")
    assert isinstance(agent, DreamerAgent)
    # resume goes on from the checkpoint, with the replay reloaded
    more = train_dreamer(DreamerTrainConfig(**{**cfg.__dict__, "env_steps": 150, "resume": True,
                                               "train_ratio": None}))  # the run's own ratio, 4
    assert more.env_steps == 150 and more.updates == 10
    # eval: the metrics of the issue, with a random policy on the same seeds
    metrics = evaluate_agent(run, "gym:MiniGrid-Empty-5x5-v0", episodes=2, seed=100)
    for key in ("mean_return", "success_rate", "random_mean_return", "env_steps", "env_steps_per_second"):
        assert key in metrics
    assert metrics["env_steps"] == 150 and metrics["env_steps_per_second"] > 0
    # its reward head drives the planners
    from nextworld.planning.episodes import PlanConfig, plan_episodes

    planned = plan_episodes(PlanConfig(run=str(run), env="gym:MiniGrid-Empty-5x5-v0", episodes=1, max_steps=4,
                                       horizon=3, action_repeat=1, replan_every=1, samples=8, progress=False))
    assert planned["objective"] == "reward" and planned["plan_calls"] >= 1
    # the run is a playable world
    from nextworld.play.world import World

    world = World.from_pretrained(run)
    frame = world.reset(np.zeros((64, 64, 3), np.uint8))
    assert world.step(2).shape == frame.shape == (64, 64, 3)
    # dream: its atlas over the real actions, and a replayed clip beside its regeneration under the recorded actions
    from nextworld.play.dream import DreamConfig, dream

    atlas = dream(DreamConfig(run=str(run), out=tmp_path / "atlas.png", prompt=f"{run}/replay:0:0", atlas=True,
                              atlas_steps=1))
    assert atlas.is_file()
    clip = dream(DreamConfig(run=str(run), out=tmp_path / "sbs.gif", prompt=f"{run}/replay:0:0", side_by_side=True,
                             frames=4))
    assert clip.is_file()
    with pytest.raises(UserInputError, match="no such sampling settings"):
        dream(DreamConfig(run=str(run), out=tmp_path / "x.gif", prompt=f"{run}/replay:0:0", actions="1",
                          temperature=0.5))


def test_bad_envs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = run_cli("train", "dreamer", "--env", "gym:NoSuchEnv-v0", "--out", str(tmp_path / "a"))
    assert_one_line_error(result, "NoSuchEnv-v0", "unknown")
    assert not (tmp_path / "a").exists()

    class NoPixels(gym.Env):
        metadata = {"render_modes": []}
        observation_space = gym.spaces.Discrete(2)
        action_space = gym.spaces.Discrete(2)

        def __init__(self, render_mode=None):
            pass

    class MultiAction(NoPixels):
        metadata = {"render_modes": ["rgb_array"]}
        action_space = gym.spaces.MultiDiscrete([2, 2])

    gym.register("NextworldTest/NoPixels-v0", entry_point=NoPixels)
    gym.register("NextworldTest/MultiAction-v0", entry_point=MultiAction)
    for env_id, fragment in (("NextworldTest/NoPixels-v0", "no rgb_array"), ("NextworldTest/MultiAction-v0",
                                                                             "not supported")):
        capsys.readouterr()
        code = main(["train", "dreamer", "--env", f"gym:{env_id}", "--out", str(tmp_path / "b")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0] and env_id in err[0], err
        assert not (tmp_path / "b").exists()
