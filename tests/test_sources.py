"""Collecting datasets from simulators: Procgen (CoinRun) and Gymnasium (MiniGrid)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid envs)
import numpy as np
import pytest
from PIL import Image

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.sources.collect import CollectConfig, collect
from nextworld.data.sources.video import fit_square
from nextworld.errors import UserInputError


def coinrun_config(out: Path, **changes) -> CollectConfig:
    """A few short CoinRun episodes: four envs, cut off after 50 actions."""
    fields = dict(source="coinrun", out=out, episodes=6, levels="3:7", max_episode_steps=50,
                  num_envs=4, seed=7, progress=False)
    fields.update(changes)
    return CollectConfig(**fields)


def all_arrays(root: Path) -> list[dict[str, np.ndarray]]:
    ds = EpisodeDataset(root)
    return [ds.read(i) for i in range(len(ds))]


@pytest.fixture(scope="module")
def coinrun_sticky(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coinrun") / "sticky"
    collect(coinrun_config(out, policy="sticky"))
    return out


# ---------------------------------------------------------------------------- procgen


def test_coinrun_episodes_have_64px_frames_true_actions_and_levels_in_range(coinrun_sticky):
    ds = EpisodeDataset(coinrun_sticky)
    assert len(ds) == 6
    assert ds.action_space == gym.spaces.Discrete(15)
    source = ds.meta["source"]
    assert (source["kind"], source["game"], source["distribution_mode"]) == ("procgen", "coinrun", "hard")
    assert source["levels"] == [3, 7]
    for ref in ds.episodes:
        assert 3 <= ref.level < 7
        rows = ds.read(ref.index)
        length = len(rows["frames"])
        assert 1 <= length <= 50
        assert rows["frames"].shape == (length, 64, 64, 3) and rows["frames"].dtype == np.uint8
        assert rows["actions"].dtype == np.int64
        assert ((rows["actions"] >= 0) & (rows["actions"] < 15)).all()
        ends = rows["terminations"] | rows["truncations"]
        assert ends[-1] and not ends[:-1].any(), "exactly the last row ends the episode"
        if length == 50:
            assert rows["truncations"][-1], "an episode cut at max_episode_steps is truncated"


def test_sticky_policy_repeats_actions_and_random_does_not(coinrun_sticky, tmp_path):
    def repeat_fraction(root: Path) -> float:
        pairs = [(e["actions"][1:] == e["actions"][:-1]) for e in all_arrays(root)]
        return float(np.concatenate(pairs).mean())

    collect(coinrun_config(tmp_path / "random", policy="random"))
    assert repeat_fraction(coinrun_sticky) > 0.6  # 0.75 + 0.25/15 expected
    assert repeat_fraction(tmp_path / "random") < 0.2  # 1/15 expected


def test_same_config_gives_the_same_coinrun_dataset(coinrun_sticky, tmp_path):
    collect(coinrun_config(tmp_path / "again", policy="sticky"))
    collect(coinrun_config(tmp_path / "other_seed", policy="sticky", seed=8))
    first, again = all_arrays(coinrun_sticky), all_arrays(tmp_path / "again")
    assert len(first) == len(again)
    for a, b in zip(first, again):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other = all_arrays(tmp_path / "other_seed")
    assert any(not np.array_equal(a["frames"], b["frames"]) for a, b in zip(first, other))


@pytest.mark.parametrize("policy", ["random", "sticky"])
def test_a_policy_restricted_to_some_actions_draws_only_those(tmp_path, policy):
    collect(coinrun_config(tmp_path / "two", policy=policy, actions="7,1"))
    drawn = np.concatenate([e["actions"] for e in all_arrays(tmp_path / "two")])
    assert set(drawn.tolist()) == {1, 7}
    assert EpisodeDataset(tmp_path / "two").meta["source"]["policy_actions"] == [1, 7]


def test_a_dataset_of_all_actions_records_no_action_subset(coinrun_sticky):
    assert "policy_actions" not in EpisodeDataset(coinrun_sticky).meta["source"]


def test_frame_skip_records_every_kth_frame_of_the_same_game(tmp_path):
    # NOOP alone (id 4) makes the policy the same at any frame skip, so the games are the same
    collect(coinrun_config(tmp_path / "k1", actions="4", episodes=4, max_episode_steps=40))
    collect(coinrun_config(tmp_path / "k4", actions="4", episodes=4, max_episode_steps=10, frame_skip=4))
    every, skipped = EpisodeDataset(tmp_path / "k1"), EpisodeDataset(tmp_path / "k4")
    assert skipped.meta["fps"] == every.meta["fps"] / 4
    assert skipped.meta["source"]["frame_skip"] == 4 and "frame_skip" not in every.meta["source"]
    by_level = {e.level: every.read(e.index)["frames"] for e in every.episodes}
    moved = 0
    for ref in skipped.episodes:
        frames = skipped.read(ref.index)["frames"]  # [10, 64, 64, 3]: game steps 0, 4, ..., 36
        np.testing.assert_array_equal(frames, by_level[ref.level][::4])
        moved += int((frames[1:] != frames[:-1]).any())
    assert moved > 0, "some level changes while the agent waits, or the test could not tell the steps apart"


class _ScriptedVecEnv:
    """Two envs, reward 1 a step: env 0's episodes end on the game steps in ``ends``, env 1's never."""

    def __init__(self, ends=(2,)):
        self.steps, self.ends = 0, ends
        self.acted: list[np.ndarray] = []

    def act(self, actions):
        self.acted.append(actions.copy())
        self.steps += 1

    def observe(self):
        first = np.array([self.steps in self.ends, False])
        rgb = np.full((2, 64, 64, 3), self.steps, np.uint8)
        return np.ones(2, np.float32), {"rgb": rgb}, first


def test_a_held_action_stops_counting_reward_when_its_episode_ends_mid_hold():
    from nextworld.data.sources.procgen import _act_held

    env = _ScriptedVecEnv()
    rewards, rgb, first, played, since = _act_held(env, np.array([7, 1]), 4)
    assert len(env.acted) == 4 and all((a == [7, 1]).all() for a in env.acted)
    assert rewards.tolist() == [2.0, 4.0]  # env 0: its two steps up to the end; env 1: all four
    assert first.tolist() == [True, False] and played.tolist() == [2, 4]
    assert since.tolist() == [2, 4], "env 0's next episode has played the hold's last two steps"
    assert (rgb == 4).all(), "the frame after the whole hold"
    # two ends in one hold: the first episode's reward stops at its end, the running one started at the second
    rewards, _, first, played, since = _act_held(_ScriptedVecEnv(ends=(1, 3)), np.array([7, 1]), 4)
    assert rewards.tolist() == [1.0, 4.0] and first.tolist() == [True, False]
    assert played.tolist() == [1, 4] and since.tolist() == [1, 4]


class _FakeProcgen:
    """A one-env stand-in for ``ProcgenGym3Env``: episode e lasts ``LENGTHS[e]`` game steps, reward 1 a
    step and 10 on the last; every pixel of a frame is ``50 * e + t`` (t: the episode's game step)."""

    LENGTHS = (3, 4, 9, 9)

    def __init__(self, num, **_):
        assert num == 1
        self.episode, self.t = 0, 0
        self.combos = [(f"K{i}",) for i in range(15)]

    def act(self, actions):
        self.t += 1

    def _frame(self):
        return {"rgb": np.full((1, 64, 64, 3), 50 * self.episode + self.t, np.uint8)}

    def observe(self):
        if self.t < self.LENGTHS[self.episode]:
            return np.ones(1, np.float32), self._frame(), np.array([self.t == 0])
        self.episode, self.t = self.episode + 1, 0  # the game resets the env by itself
        return np.full(1, 10, np.float32), self._frame(), np.array([True])

    def get_info(self):
        return [{"level_seed": 5 + self.episode}]

    def close(self):
        self.closed.append(self.episode)

    closed: list[int] = []  # the episode each instance was closed in (collect must close its env)


def test_frame_skip_records_an_episode_that_starts_mid_hold_from_the_next_recorded_frame(tmp_path, monkeypatch):
    from nextworld.data.sources import procgen

    monkeypatch.setattr(procgen, "ProcgenGym3Env", _FakeProcgen)
    monkeypatch.setattr(procgen, "PROCGEN_TIMEOUT", 4)  # so the second episode's 4 game steps are its time limit
    monkeypatch.setattr(_FakeProcgen, "closed", [])
    collect(coinrun_config(tmp_path / "k2", episodes=2, num_envs=1, frame_skip=2, max_episode_steps=100))
    ds = EpisodeDataset(tmp_path / "k2")
    first, second = ds.read(0), ds.read(1)
    # episode 0 (3 game steps): frames at steps 0 and 2; its 2nd hold ends it at step 3, the 4th step is episode 1's
    assert first["frames"][:, 0, 0, 0].tolist() == [0, 2] and first["rewards"].tolist() == [2.0, 10.0]
    assert first["terminations"][-1] and not first["truncations"][-1]
    # episode 1 is recorded from its game step 1 and counts that unrecorded step: 1 + 2 + 1 = 4 steps, its time limit
    assert second["frames"][:, 0, 0, 0].tolist() == [51, 53] and second["rewards"].tolist() == [2.0, 10.0]
    assert second["truncations"][-1] and not second["terminations"][-1]
    assert [ref.level for ref in ds.episodes] == [5, 6]
    assert _FakeProcgen.closed == [2], "the env is closed once, after the second episode ended"


@pytest.mark.parametrize("changes, message", [
    (dict(source="procgen:notagame"), "procgen:notagame: unknown Procgen game"),
    (dict(actions="1,15"), "actions '1,15': expected distinct ids"),
    (dict(actions="1,1"), "actions '1,1': expected distinct ids"),
    (dict(actions="left"), "actions 'left': expected comma-separated"),
    (dict(source="gym:MiniGrid-Empty-5x5-v0", actions="1"), "actions '1': Procgen only"),
    (dict(levels="9:3"), "levels '9:3'"),
    (dict(size=32), "size 32"),
    (dict(source="atari:Pong"), "source 'atari:Pong': unknown"),
    (dict(episodes=0), "episodes 0"),
    (dict(frame_skip=0), "frame_skip 0: must be at least 1"),
    (dict(source="gym:MiniGrid-Empty-5x5-v0", frame_skip=2), "frame_skip 2: Procgen only"),
])
def test_bad_collect_inputs_fail_before_creating_the_output(tmp_path, changes, message):
    out = tmp_path / "never"
    with pytest.raises(UserInputError, match=message):
        collect(coinrun_config(out, **changes))
    assert not out.exists()


# ---------------------------------------------------------------------------- gymnasium


def minigrid_config(out: Path, **changes) -> CollectConfig:
    fields = dict(source="gym:MiniGrid-Empty-5x5-v0", out=out, episodes=3, max_episode_steps=20,
                  seed=11, progress=False)
    fields.update(changes)
    return CollectConfig(**fields)


def test_minigrid_collect_stores_frames_actions_seeds_and_the_terminal_row(tmp_path):
    summary = collect(minigrid_config(tmp_path / "grid"))
    ds = EpisodeDataset(tmp_path / "grid")
    assert (summary.episodes, summary.frames) == (3, ds.num_frames)
    assert ds.action_space == gym.spaces.Discrete(7)
    assert ds.meta["source"]["env_id"] == "MiniGrid-Empty-5x5-v0"
    assert [ref.seed for ref in ds.episodes] == [11, 12, 13]
    env = gym.make("MiniGrid-Empty-5x5-v0", render_mode="rgb_array")
    for ref in ds.episodes:
        rows = ds.read(ref.index)
        length = len(rows["frames"])
        assert rows["frames"].shape == (length, 64, 64, 3)
        assert 2 <= length <= 21  # at most 20 actions, plus the terminal frame
        assert ((rows["actions"] >= 0) & (rows["actions"] < 7)).all()
        # the terminal frame's row: action 0, reward 0, no flags; the row before it ends the episode
        assert (rows["actions"][-1], rows["rewards"][-1]) == (0, 0.0)
        assert not rows["terminations"][-1] and not rows["truncations"][-1]
        assert rows["terminations"][-2] or rows["truncations"][-2]
        assert not (rows["terminations"][:-2] | rows["truncations"][:-2]).any()
        # the stored seed reproduces the episode's first frame
        env.reset(seed=ref.seed)
        np.testing.assert_array_equal(rows["frames"][0], fit_square(Image.fromarray(env.render()), 64, "pad"))
    env.close()


def test_minigrid_collect_is_reproducible(tmp_path):
    collect(minigrid_config(tmp_path / "a", policy="sticky"))
    collect(minigrid_config(tmp_path / "b", policy="sticky"))
    for a, b in zip(all_arrays(tmp_path / "a"), all_arrays(tmp_path / "b"), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_unknown_gym_id_is_a_user_error_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(UserInputError, match=r"^gym:Foo-v0: unknown Gymnasium environment id"):
        collect(minigrid_config(out, source="gym:Foo-v0"))
    assert not out.exists()


class _NoRenderEnv(gym.Env):
    metadata = {"render_modes": ["human"]}
    action_space = gym.spaces.Discrete(2)
    observation_space = gym.spaces.Discrete(1)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode


class _MultiDiscreteEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}
    action_space = gym.spaces.MultiDiscrete([2, 3])
    observation_space = gym.spaces.Discrete(1)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
@pytest.mark.parametrize("env_class, message", [
    (_NoRenderEnv, "no rgb_array render mode"),
    (_MultiDiscreteEnv, r"action space MultiDiscrete\(\[2 3\]\) is not supported"),
])
def test_gym_envs_without_frames_or_with_other_action_spaces_are_refused(tmp_path, env_class, message):
    env_id = f"NextworldTest{env_class.__name__}-v0"
    gym.register(id=env_id, entry_point=env_class)
    out = tmp_path / "never"
    try:
        with pytest.raises(UserInputError, match=f"^gym:{env_id}: .*{message}"):
            collect(minigrid_config(out, source=f"gym:{env_id}"))
    finally:
        gym.registry.pop(env_id)
    assert not out.exists()
