"""Two-Rooms: the env (geometry, walls, task, Gymnasium contract) and its collect source."""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import nextworld.data.tasks
from nextworld.cli import main
from nextworld.data.episodes import EpisodeDataset
from nextworld.data.sources.collect import CollectConfig, collect
from nextworld.data.tasks import TWOROOMS_ID, TwoRoomsEnv, make_tworooms
from nextworld.data.tasks.tworooms import Layout, render_frame, render_frames, walls_image
from nextworld.errors import UserInputError

FIXED = Layout(32, 10)


def centroid(frame: np.ndarray) -> np.ndarray:
    """(x, y) centroid of the agent channel of a uint8 [64, 64, 3] frame."""
    blob = frame[..., 0].astype(np.float64)
    rows, cols = np.indices(blob.shape)
    return np.array([(blob * cols).sum(), (blob * rows).sum()]) / blob.sum()


def wall_distance(frame: np.ndarray, x: float, y: float) -> float:
    """Chebyshev distance from (x, y) to the nearest wall pixel's square, read off the frame."""
    rows, cols = np.nonzero(frame[..., 1] == 255)
    return float(np.maximum(np.abs(cols - x), np.abs(rows - y)).min()) - 0.5


def env_at(start: tuple[float, float], goal: tuple[float, float] = (55.0, 50.0), **fields) -> TwoRoomsEnv:
    env = TwoRoomsEnv(**fields)
    env.reset(seed=0, options={"start": start, "goal": goal})
    return env


def push(env: TwoRoomsEnv, action: tuple[float, float], steps: int) -> list[np.ndarray]:
    return [env.step(np.float32(action))[4]["position"] for _ in range(steps)]


# ---------------------------------------------------------------------------- the Gymnasium contract


@pytest.mark.parametrize("random_wall", [False, True])
def test_gymnasium_env_checker_passes(random_wall):
    env = gym.make(TWOROOMS_ID, render_mode="rgb_array", random_wall=random_wall).unwrapped  # with a spec
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # PLDM's action range is pixels, [-2.45, 2.45], not the [-1, 1] Gymnasium suggests
        warnings.filterwarnings("ignore", message=".*recommend using a symmetric and normalized space")
        check_env(env)


def test_registration_survives_a_second_import_and_make_agrees_with_the_class():
    importlib.reload(nextworld.data.tasks)
    made = gym.make(TWOROOMS_ID)
    direct = make_tworooms()
    a, _ = made.reset(seed=4)
    b, _ = direct.reset(seed=4)
    np.testing.assert_array_equal(a, b)
    assert made.unwrapped.config == direct.config


def test_observation_shows_the_agent_blob_at_its_subpixel_position_and_walls_in_cyan():
    env = TwoRoomsEnv(render_mode="rgb_array")
    rng = np.random.default_rng(0)
    for x, y in [(5.0, 5.0), (59.0, 59.0), (12.3, 47.71), (40.5, 20.25), *rng.uniform(8, 28, (10, 2))]:
        obs, info = env.reset(seed=1, options={"start": (x, y)})
        assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3) and env.observation_space.contains(obs)
        np.testing.assert_allclose(centroid(obs), (x, y), atol=0.2)
        np.testing.assert_array_equal(info["position"], np.float32([x, y]))
        np.testing.assert_array_equal(env.render(), obs)
        assert obs[..., 0].max() >= 200
    walls = obs[..., 1]
    np.testing.assert_array_equal(obs[..., 2], walls)
    assert (walls[[4, 60], 4:61] == 255).all() and (walls[4:61, [4, 60]] == 255).all(), "border lines"
    assert (walls[:4] == 0).all() and (walls[61:] == 0).all() and (walls[:, :4] == 0).all()
    assert (walls[np.r_[5:6, 15:60]][:, 31:34] == 255).all(), "wall columns 31-33 outside the door"
    assert (walls[6:15, 31:34] == 0).all(), "door rows 6-14"
    assert (walls[5:60, 5:31] == 0).all() and (walls[5:60, 34:60] == 0).all(), "rooms are empty"
    goal = env.render_goal()
    np.testing.assert_allclose(centroid(goal), info["goal"], atol=0.2)
    np.testing.assert_array_equal(goal[..., 1:], obs[..., 1:])


def test_windowed_and_whole_frame_renders_agree():
    rng = np.random.default_rng(1)
    positions = np.concatenate([rng.uniform(5, 59, (300, 2)), [[5, 5], [59, 59], [5, 59], [5.49, 58.51]]])
    layout = Layout(23, 50)
    frames = render_frames(positions, layout)
    for position, frame in zip(positions, frames):
        np.testing.assert_array_equal(render_frame(*position, layout), frame)


# ---------------------------------------------------------------------------- dynamics


def test_the_wall_blocks_and_the_door_lets_through():
    env = env_at((25.0, 40.0))
    xs = [p[0] for p in push(env, (2.45, 0.0), 10)]
    assert max(xs) <= 31.0 and xs[-1] == pytest.approx(30.0), "stops half a pixel before column 31"
    env = env_at((25.0, 10.0))
    xs = [p[0] for p in push(env, (2.45, 0.0), 10)]
    assert xs[-1] > 34.0, "the same pushes through the door cross into the right room"


def test_the_border_stops_the_agent():
    env = env_at((10.0, 10.0))
    assert push(env, (-2.45, 0.0), 5)[-1][0] == 5.0
    assert push(env, (0.0, -2.45), 5)[-1][1] == 5.0
    env = env_at((50.0, 50.0))
    np.testing.assert_array_equal(push(env, (2.0, 2.0), 10)[-1], [59.0, 59.0])


def test_a_move_stops_where_it_first_touches_and_never_slides():
    # straight into the wall's face below the door: cut where x reaches 30, y along the segment
    assert FIXED.move(29.0, 20.0, 2.0, 1.0) == (30.0, 20.5)
    # in the doorway, rising into the wall above the door: cut at y = 6 with x along the segment
    x, y = FIXED.move(29.9, 6.2, 2.0, -0.5)
    assert (x, y) == (pytest.approx(30.7), 6.0)
    # exactly through the door's corner and on into the wall: held at the corner
    assert FIXED.move(29.0, 7.0, 2.0, -2.0) == (30.0, 6.0)
    # along the wall's face, touching but not entering: free to move
    assert FIXED.move(30.0, 20.0, 0.0, 2.0) == (30.0, 22.0)
    assert FIXED.move(30.0, 20.0, 1.0, 0.0) == (30.0, 20.0)


@pytest.mark.parametrize("layout", [FIXED, Layout(20, 54), Layout(44, 10)])
def test_no_move_near_the_door_corners_tunnels_through_the_wall(layout):
    rng = np.random.default_rng(2)
    rows, cols = np.nonzero(walls_image(layout)[..., 1] == 255)
    corners = [(layout.wall_x + sx, layout.door_y + sy) for sx in (-2, 2) for sy in (-4, 4)]
    paths = []  # (x, y, nx, ny)
    for _ in range(3000):
        cx, cy = corners[rng.integers(4)]
        x, y = rng.uniform(-3, 3, 2) + (cx, cy)
        if not layout.is_free(x, y):
            continue
        dx, dy = rng.uniform(-2.45, 2.45, 2)
        nx, ny = layout.move(x, y, dx, dy)
        assert layout.is_free(nx, ny)
        # the move ends on the segment the action asked for, no further than asked
        assert math.hypot(nx - x, ny - y) <= math.hypot(dx, dy) + 1e-9
        assert abs((nx - x) * dy - (ny - y) * dx) < 1e-9
        paths.append((x, y, nx, ny))
    paths = np.array(paths)  # [M, 4]
    t = np.linspace(0.0, 1.0, 41)[None, :]
    xs = paths[:, :1] + t * (paths[:, 2:3] - paths[:, :1])  # [M, 41]
    ys = paths[:, 1:2] + t * (paths[:, 3:4] - paths[:, 1:2])
    # every point of every path keeps half a pixel (Chebyshev) from every wall pixel's square
    gap = np.maximum(np.abs(xs[..., None] - cols), np.abs(ys[..., None] - rows)).min(axis=-1) - 0.5  # [M, 41]
    assert gap.min() >= 0.5 - 1e-9


def test_long_actions_are_scaled_to_the_max_norm_and_bad_actions_are_refused():
    env = env_at((15.0, 30.0))
    position = env.step(np.float32([2.45, 2.45]))[4]["position"]
    step = position - np.float32([15.0, 30.0])
    assert np.linalg.norm(step) == pytest.approx(2.45, abs=1e-5)
    assert step[0] == pytest.approx(step[1], abs=1e-6)
    for bad, message in [(np.zeros(3), "shape"), (0.5, "shape"), ([np.nan, 0.0], "finite"),
                         ([0.0, np.inf], "finite")]:
        with pytest.raises(UserInputError, match=message):
            env.step(bad)
    with pytest.raises(RuntimeError, match="before reset"):
        TwoRoomsEnv().step(np.zeros(2))


# ---------------------------------------------------------------------------- the task


@pytest.mark.parametrize("random_wall", [False, True])
def test_reset_puts_start_and_goal_in_opposite_rooms_away_from_walls(random_wall):
    env = TwoRoomsEnv(random_wall=random_wall)
    left_starts, layouts = 0, set()
    for seed in range(200):
        obs, info = env.reset(seed=seed)
        layout = env.layout
        layouts.add(layout)
        (sx, sy), (gx, gy) = info["position"], info["goal"]
        rooms = layout.room(float(sx)), layout.room(float(gx))
        assert set(rooms) == {0, 1}, (seed, info)
        left_starts += rooms[0] == 0
        for x, y in ((sx, sy), (gx, gy)):
            assert wall_distance(obs, x, y) >= 2 * 1.3 - 1e-4
        assert not info["success"] and info["distance"] > 5
        np.testing.assert_array_equal(info["wall"], [layout.wall_x, layout.door_y])
    assert 70 <= left_starts <= 130, "the start room is a fair coin"
    if random_wall:
        assert len(layouts) > 100
        assert all(20 <= w.wall_x <= 44 and 10 <= w.door_y <= 54 for w in layouts)
    else:
        assert layouts == {FIXED}


def test_reset_and_steps_are_deterministic_under_a_seed():
    def run(seed: int) -> list:
        env = TwoRoomsEnv(random_wall=True)
        obs, info = env.reset(seed=seed)
        out = [obs, info["goal"]]
        for action in np.random.default_rng(0).uniform(-2.45, 2.45, (20, 2)):
            obs, _, _, _, info = env.step(action)
            out += [obs, info["position"]]
        return out

    for a, b in zip(run(3), run(3)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(run(3)[0], run(4)[0])


def test_reset_options_are_honoured_and_checked():
    env = TwoRoomsEnv()
    _, info = env.reset(seed=0, options={"start": (10.0, 20.0), "goal": (50.0, 40.0)})
    np.testing.assert_array_equal(info["position"], [10, 20])
    np.testing.assert_array_equal(info["goal"], [50, 40])
    for seed in range(20):
        _, info = env.reset(seed=seed, options={"start": (10.0, 20.0)})
        assert env.layout.room(float(info["goal"][0])) == 1
        _, info = env.reset(seed=seed, options={"goal": (10.0, 20.0)})
        assert env.layout.room(float(info["position"][0])) == 1
    for options, message in [({"start": (32.0, 30.0)}, "not in free space"),
                             ({"goal": (4.0, 30.0)}, "not in free space"),
                             ({"start": (10.0,)}, "two finite numbers"),
                             ({"goal": (10.0, np.nan)}, "two finite numbers"),
                             ({"begin": (10.0, 20.0)}, "unknown")]:
        with pytest.raises(UserInputError, match=message):
            env.reset(seed=0, options=options)
    env.reset(seed=0, options={"start": (32.0, 10.0)})  # the doorway is free space


def test_reaching_the_goal_gives_reward_one_and_terminates():
    env = env_at((20.0, 30.0), goal=(24.0, 30.0))
    _, reward, terminated, truncated, info = env.step(np.float32([2.0, 0.0]))
    assert (reward, terminated, truncated, info["success"]) == (0.0, False, False, False)
    assert info["distance"] == pytest.approx(2.0)
    _, reward, terminated, truncated, info = env.step(np.float32([0.7, 0.0]))
    assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)
    assert info["distance"] < math.sqrt(2)


def test_episodes_are_truncated_after_max_episode_steps():
    env = env_at((10.0, 30.0))
    flags = [env.step(np.float32([0.0, 0.0]))[2:4] for _ in range(200)]
    assert flags[-1] == (False, True) and not any(truncated for _, truncated in flags[:-1])
    env = env_at((10.0, 30.0), max_episode_steps=5)
    assert [env.step(np.float32([0.5, 0.0]))[3] for _ in range(5)] == [False] * 4 + [True]
    with pytest.raises(UserInputError, match="unknown option"):
        TwoRoomsEnv(max_steps=5)


# ---------------------------------------------------------------------------- collect


def tworooms_config(out: Path, **changes) -> CollectConfig:
    fields = dict(source="tworooms", out=out, episodes=3, max_episode_steps=20, policy="wandering", seed=5,
                  progress=False)
    fields.update(changes)
    return CollectConfig(**fields)


def read_all(root: Path) -> list[dict[str, np.ndarray]]:
    ds = EpisodeDataset(root)
    return [ds.read(i) for i in range(len(ds))]


@pytest.fixture(scope="module")
def wandering(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tworooms") / "wandering"
    collect(tworooms_config(out))
    return out


def test_collected_rows_follow_the_dataset_conventions(wandering):
    ds = EpisodeDataset(wandering)
    assert len(ds) == 3 and [ref.seed for ref in ds.episodes] == [5, 6, 7]
    assert ds.action_space == gym.spaces.Box(-2.45, 2.45, (2,), np.float32)
    source = ds.meta["source"]
    assert (source["kind"], source["variant"], source["policy"], source["max_episode_steps"]) == \
        ("tworooms", "fixed", "wandering", 20)
    for rows in read_all(wandering):
        assert rows["frames"].shape == (21, 64, 64, 3) and rows["frames"].dtype == np.uint8
        assert rows["actions"].shape == (21, 2) and rows["actions"].dtype == np.float32
        assert (np.linalg.norm(rows["actions"], axis=1) <= 2.45 + 1e-6).all()
        assert (rows["actions"][-1] == 0).all() and (rows["rewards"] == 0).all()
        assert not rows["terminations"].any()
        assert rows["truncations"].nonzero()[0].tolist() == [19]
        np.testing.assert_array_equal(rows["label_wall"], np.tile([32, 10], (21, 1)))


def test_collected_positions_match_the_frames_and_the_env_dynamics(wandering):
    for rows in read_all(wandering):
        positions = rows["label_position"]
        for frame, position in zip(rows["frames"], positions):
            np.testing.assert_allclose(centroid(frame), position, atol=0.2)
        env = TwoRoomsEnv()
        env.reset(seed=0, options={"start": positions[0]})
        replayed = [env.step(action)[4]["position"] for action in rows["actions"][:-1]]
        np.testing.assert_allclose(replayed, positions[1:], atol=1e-4)


def test_wandering_turns_gently_and_random_does_not(wandering, tmp_path):
    def mean_turn(root: Path) -> float:
        turns = []
        for rows in read_all(root):
            headings = np.arctan2(rows["actions"][:-1, 1], rows["actions"][:-1, 0])
            turns.append(np.abs(np.angle(np.exp(1j * np.diff(headings)))))
        return float(np.concatenate(turns).mean())

    collect(tworooms_config(tmp_path / "random", policy="random"))
    assert mean_turn(wandering) < 0.6  # about 0.36 rad for concentration 5
    assert mean_turn(tmp_path / "random") > 1.2  # pi / 2 for uniform headings


def test_same_seed_same_data_and_random_wall_layouts_vary(wandering, tmp_path):
    collect(tworooms_config(tmp_path / "again"))
    for a, b in zip(read_all(wandering), read_all(tmp_path / "again")):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    collect(tworooms_config(tmp_path / "walls", source="tworooms:random-wall", episodes=4, policy="sticky"))
    episodes = read_all(tmp_path / "walls")
    assert len({tuple(rows["label_wall"][0]) for rows in episodes}) > 1
    for rows in episodes:
        wall_x, door_y = (int(v) for v in rows["label_wall"][0])
        np.testing.assert_array_equal(rows["frames"][0][..., 1:], walls_image(Layout(wall_x, door_y))[..., 1:])


def test_crossing_starts_most_episodes_beside_the_door_and_goes_through(tmp_path):
    collect(tworooms_config(tmp_path / "crossing", policy="crossing", episodes=40, max_episode_steps=12))
    collect(tworooms_config(tmp_path / "plain", episodes=40, max_episode_steps=12))

    def crossing_share(root: Path) -> float:
        changed = [(rows["label_position"][:, 0] > 32).any() != (rows["label_position"][:, 0] > 32).all()
                   for rows in read_all(root)]
        return float(np.mean(changed))

    starts = np.stack([rows["label_position"][0] for rows in read_all(tmp_path / "crossing")])
    beside = (np.abs(starts[:, 0] - 32) <= 12) & (np.abs(starts[:, 1] - 10) <= 3)
    assert 0.4 <= beside.mean() <= 0.8  # CROSS_RATE 0.6 of 40 episodes
    assert crossing_share(tmp_path / "crossing") >= 0.3 > crossing_share(tmp_path / "plain")


@pytest.mark.parametrize("changes, message", [
    (dict(source="tworooms:maze"), "tworooms:maze: unknown variant"),
    (dict(source="gym:MiniGrid-Empty-5x5-v0", policy="crossing"), "policy crossing: Two-Rooms only"),
    (dict(size=32), "size 32: tworooms renders 64×64 only"),
    (dict(source="gym:MiniGrid-Empty-5x5-v0"), "policy wandering: Two-Rooms only"),
])
def test_bad_tworooms_inputs_fail_before_creating_the_output(tmp_path, changes, message):
    out = tmp_path / "never"
    with pytest.raises(UserInputError, match=message):
        collect(tworooms_config(out, **changes))
    assert not out.exists()


def test_cli_collects_tworooms_and_refuses_other_sizes_in_one_line(tmp_path, capsys):
    out = tmp_path / "cli"
    done = subprocess.run(
        [sys.executable, "-m", "nextworld", "collect", "tworooms", "--out", str(out), "--episodes", "2",
         "--max-episode-steps", "10", "--policy", "wandering", "--seed", "3", "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert EpisodeDataset(out).num_frames == 22
    never = tmp_path / "small"
    assert main(["collect", "tworooms", "--out", str(never), "--size", "32", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "size 32: tworooms renders 64×64 only" in err and len(err.splitlines()) == 1
    assert not never.exists()
