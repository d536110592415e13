"""Playing a world: World (reset/step), the sliding context, GenieWorld loading, and the Gymnasium env."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from nextworld.errors import UserInputError
from nextworld.data.camera import covered, translate
from nextworld.models.base import load_pretrained, save_pretrained
from nextworld.models.genie.dynamics import GenieDynamics
from nextworld.models.genie.world import GenieWorld
from nextworld.play.world import World, load_world_model
from nextworld.play.world_env import WorldEnv

pytestmark = pytest.mark.usefixtures("one_thread")


def prompt(seed: int = 0, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_reset_and_step_give_frames_of_the_world(tiny_world: Path) -> None:
    world = World.from_pretrained(tiny_world)
    assert world.num_actions == 4 and world.frame_shape == (16, 16, 3)
    first = world.reset(prompt())
    assert first.shape == (16, 16, 3) and first.dtype == np.uint8
    frames = [world.step(a) for a in (0, 1, 2, 3)]
    assert all(f.shape == (16, 16, 3) and f.dtype == np.uint8 for f in frames)
    assert world.steps == 4 and np.array_equal(world.frame, frames[-1])


def test_any_prompt_size_is_fitted_and_several_frames_are_context(tiny_world: Path) -> None:
    world = World.from_pretrained(tiny_world)
    assert world.reset(prompt(size=50)).shape == (16, 16, 3)  # one image of another size: centre-cropped, resized
    clip = np.stack([prompt(i) for i in range(3)])  # (3, 16, 16, 3): frames already of the world's size
    world.reset(clip)
    assert world.state.tokens.shape[1] == 3 and world.state.actions.shape == (1, 2)  # actions inferred between them


def test_sampling_is_deterministic_under_a_seed_and_leaves_the_global_generator(tiny_world: Path) -> None:
    def play(seed: int) -> np.ndarray:
        world = World.from_pretrained(tiny_world)
        world.reset(prompt(), seed=seed)
        return np.stack([world.step(a) for a in (1, 2, 3, 0, 1)])

    before = torch.random.get_rng_state()
    assert np.array_equal(play(3), play(3))
    assert not np.array_equal(play(3), play(4))
    assert torch.equal(before, torch.random.get_rng_state())


def test_context_slides_past_max_frames(tiny_world: Path) -> None:
    world = World.from_pretrained(tiny_world)  # max_frames 6
    world.reset(prompt())
    for t in range(15):
        world.step(t % 4)
    assert world.state.tokens.shape[1] <= world.model.max_frames
    assert world.state.cache.length == world.state.tokens.shape[1]  # the cache holds exactly the context


def test_bad_actions_and_step_before_reset(tiny_world: Path) -> None:
    world = World.from_pretrained(tiny_world)
    with pytest.raises(RuntimeError, match="before reset"):
        world.step(0)
    world.reset(prompt())
    for bad in (4, -1, 1.5, "2", True):
        with pytest.raises(UserInputError, match="outside the world's actions 0..3"):
            world.step(bad)
    with pytest.raises(UserInputError, match="prompt"):
        world.reset(np.zeros((16, 16), np.float32))


@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_world_env_passes_gymnasiums_checker(tiny_world: Path) -> None:
    env = WorldEnv(World.from_pretrained(tiny_world), prompts=[prompt(0), prompt(1)], max_episode_steps=3)
    check_env(env, skip_render_check=False)
    obs, _ = env.reset(seed=0, options={"prompt": prompt(2)})
    assert env.observation_space.contains(obs)
    truncated = False
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward == 0.0 and not terminated
    assert truncated and info["steps"] == 3
    replay = WorldEnv(World.from_pretrained(tiny_world), prompts=[prompt(0), prompt(1)])

    def episode(seed: int) -> np.ndarray:
        first, _ = replay.reset(seed=seed)
        return np.stack([first, *[replay.step(a)[0] for a in (0, 1, 2, 3)]])

    assert np.array_equal(episode(5), episode(5))  # the env's seed fixes the prompt and the sampling
    assert not np.array_equal(episode(5), episode(6))
    with pytest.raises(UserInputError, match="outside the world's actions"):
        replay.step(2.7)


def test_loading_refuses_incomplete_mismatched_or_foreign_worlds(tiny_world: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(tiny_world, partial)
    shutil.rmtree(partial / "lam")
    with pytest.raises(UserInputError, match="no lam stage"):
        GenieWorld.from_run(partial)

    foreign = tmp_path / "foreign"  # a stage directory holding another family's checkpoint
    shutil.copytree(tiny_world, foreign)
    shutil.rmtree(foreign / "lam")
    shutil.copytree(tiny_world / "tokenizer", foreign / "lam")
    with pytest.raises(UserInputError, match="a 'genie-tokenizer' checkpoint, expected 'genie-lam'"):
        World.from_pretrained(foreign)

    mismatched = tmp_path / "mismatched"  # a dynamics model made for another tokenizer
    shutil.copytree(tiny_world, mismatched)
    dynamics = load_pretrained(mismatched / "dynamics")
    save_pretrained(GenieDynamics(dataclasses.replace(dynamics.config, num_codes=32)), mismatched / "dynamics",
                    "genie-dynamics")
    with pytest.raises(UserInputError, match="stages do not fit together"):
        GenieWorld.from_run(mismatched)

    no_world = tmp_path / "tokenizer-only"
    shutil.copytree(tiny_world / "tokenizer", no_world / "tokenizer")
    with pytest.raises(UserInputError, match="not a playable world"):
        load_world_model(no_world)
    with pytest.raises(UserInputError, match="not a shipped world"):
        load_world_model("no-such-world")


def test_world_json_sampling_sets_the_defaults_and_is_checked(tiny_world: Path) -> None:
    assert (World.from_pretrained(tiny_world).model.sample_steps, World.from_pretrained(tiny_world).model.temperature) \
        == (8, 1.0)  # a world without a sampling entry
    spec = json.loads((tiny_world / "world.json").read_text())
    spec["sampling"] = {"sample_steps": 2, "temperature": 0.0, "chosen_on": {"data": "val"}}
    (tiny_world / "world.json").write_text(json.dumps(spec))
    model = World.from_pretrained(tiny_world).model
    assert (model.sample_steps, model.temperature) == (2, 0.0)
    model.set_sampling(temperature=0.5)
    assert (model.sample_steps, model.temperature) == (2, 0.5)
    with pytest.raises(UserInputError, match="sample_steps 0"):
        model.set_sampling(sample_steps=0)
    spec["sampling"] = {"sample_steps": "2"}
    (tiny_world / "world.json").write_text(json.dumps(spec))
    with pytest.raises(UserInputError, match="sampling.sample_steps '2' must be an integer of at least 1"):
        World.from_pretrained(tiny_world)
    spec["sampling"] = {"keep_bias": "4"}
    (tiny_world / "world.json").write_text(json.dumps(spec))
    with pytest.raises(UserInputError, match=r"world.json: sampling.keep_bias '4' must be a finite number"):
        World.from_pretrained(tiny_world)
    spec["sampling"] = {"keep_bias": 4}  # the tiny world's dynamics has no copy path
    (tiny_world / "world.json").write_text(json.dumps(spec))
    with pytest.raises(UserInputError, match="keep_bias 4: this world's dynamics has no copy path"):
        World.from_pretrained(tiny_world)
    spec["sampling"] = {"steps": 2}
    (tiny_world / "world.json").write_text(json.dumps(spec))
    with pytest.raises(UserInputError, match="sampling"):
        World.from_pretrained(tiny_world)


# ---------------------------------------------------------------------------- motion compensation

SHIFTS = ((0, 0), (0, 2), (-1, 0), (3, -2))


def compensated(world_dir: Path) -> GenieWorld:
    """The tiny world with its dynamics replaced by a motion-compensated one whose "keep" always wins."""
    world = GenieWorld.from_run(world_dir)
    config = dataclasses.replace(world.dynamics.config, copy_path=True, action_shifts=SHIFTS)
    torch.manual_seed(0)
    dynamics = GenieDynamics(config).eval()
    with torch.no_grad():
        dynamics.head.bias.view(-1, config.num_codes + 1)[:, -1] = 50.0  # "keep" certain at every place
    world = GenieWorld(world.tokenizer, world.lam, dynamics)
    world.set_sampling(1, 0.0)
    return world


def test_a_compensated_world_keeps_the_last_frame_moved_by_the_actions_shift(tiny_world: Path) -> None:
    world = compensated(tiny_world)
    x = torch.from_numpy(prompt()).permute(2, 0, 1)[None, None].float() / 255  # (1, 1, C, H, W)
    state = world.encode(x)
    for action in (1, 3, 2, 0):
        last = world.decode(state)  # (1, C, H, W)
        moved = world.tokenizer.encode_moved(last, torch.tensor([SHIFTS[action]]))  # (1, h, w)
        assert action == 0 or not torch.equal(moved, state.tokens[:, -1])  # the move shows in the tokens
        state, pred = world.step(state, torch.tensor([action]))
        assert torch.equal(pred.tokens, moved)
    plain = GenieWorld.from_run(tiny_world)
    assert torch.equal(plain.keep_grid(state.tokens, torch.tensor([1])), state.tokens[:, -1])
    world.set_sampling(keep_bias=-100.0)  # outweighs the head's certainty: the world stops keeping
    moved = world.tokenizer.encode_moved(world.decode(state), torch.tensor([SHIFTS[1]]))
    state, pred = world.step(state, torch.tensor([1]))
    assert not (pred.tokens == moved).all()
    with pytest.raises(UserInputError, match="finite"):
        world.set_sampling(keep_bias=float("nan"))


def test_each_token_shows_moved_pixels_if_kept_and_its_decoding_if_new(tiny_world: Path) -> None:
    """Batch 2, different actions, an asymmetric set of new tokens: the mask is per token and per world."""
    changed = torch.zeros(2, 4, 4, dtype=torch.bool)  # the tiny world's 4x4 token grid
    changed[0, 0, :3] = changed[0, 1, 0] = True  # an L in world 0
    changed[1, 3, 2] = True  # one token in world 1

    def generate_next(cache, action, steps, temperature, generator=None, previous=None, keep_bias=0.0):
        return torch.where(changed, (previous + 1) % world.dynamics.config.num_codes, previous)

    for shifts in (SHIFTS, None):  # motion-compensated, and a copy path that keeps tokens where they are
        world = compensated(tiny_world)
        if shifts is None:
            config = dataclasses.replace(world.dynamics.config, action_shifts=None)
            world = GenieWorld(world.tokenizer, world.lam, GenieDynamics(config).eval())
        world.dynamics.generate_next = generate_next
        x = torch.from_numpy(np.stack([prompt(0), prompt(1)])).permute(0, 3, 1, 2)[:, None].float() / 255
        state = world.encode(x)
        last = world.decode(state)  # (2, C, 16, 16)
        action = torch.tensor([1, 3])
        state, pred = world.step(state, action)
        decoded = world.tokenizer.decode(pred.tokens[:, None])[:, 0]
        moved = last if shifts is None else translate(last, torch.tensor(SHIFTS)[action])
        inside = torch.ones(2, 1, 16, 16, dtype=torch.bool) if shifts is None else \
            covered(torch.tensor(SHIFTS)[action], 16, 16)
        for b in range(2):
            for i in range(4):
                for j in range(4):
                    patch = (b, slice(None), slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4))
                    keep = ~changed[b, i, j] & inside[patch]
                    assert torch.equal(pred.frames[patch][keep.expand_as(pred.frames[patch])],
                                       moved[patch][keep.expand_as(moved[patch])]), (shifts, b, i, j)
                    assert torch.equal(pred.frames[patch][~keep.expand_as(pred.frames[patch])],
                                       decoded[patch][~keep.expand_as(decoded[patch])]), (shifts, b, i, j)
        assert not torch.equal(pred.frames, decoded) and not torch.equal(pred.frames, moved)


def test_a_kept_token_shows_the_moved_pixels_and_a_new_one_its_decoding(tiny_world: Path) -> None:
    world = compensated(tiny_world)
    x = torch.from_numpy(prompt()).permute(2, 0, 1)[None, None].float() / 255  # (1, 1, C, H, W)
    state = world.encode(x)
    shown = world.decode(state)  # the prompt through the tokenizer
    for action in (1, 3):  # every token kept
        state, pred = world.step(state, torch.tensor([action]))
        shift = torch.tensor([SHIFTS[action]])
        decoded = world.tokenizer.decode(pred.tokens[:, None])[:, 0]
        inside = covered(shift, 16, 16).expand_as(decoded)
        # the moved pixels themselves, not re-decoded; the uncovered border (a repeated edge) decoded
        assert torch.equal(pred.frames[inside], translate(shown, shift)[inside])
        assert torch.equal(pred.frames[~inside], decoded[~inside]) and (~inside).any()
        assert not torch.allclose(pred.frames, decoded)
        assert torch.equal(world.decode(state), pred.frames)
        shown = pred.frames
    world.set_sampling(keep_bias=-100.0)  # nothing kept: the frame is the new tokens decoded
    state, pred = world.step(state, torch.tensor([2]))
    assert torch.equal(pred.frames, world.tokenizer.decode(pred.tokens[:, None])[:, 0])


def test_compensated_training_inputs_keep_codes_of_the_real_frame_moved(tiny_world: Path) -> None:
    from nextworld.data.frames import to_model_frames
    from nextworld.models.genie.training import DynamicsInputs

    world = compensated(tiny_world)
    frames = torch.from_numpy(np.stack([np.stack([prompt(seed + t) for t in range(4)]) for seed in (0, 9)]))
    inputs = DynamicsInputs(world.tokenizer, world.lam, world.dynamics.config.shift_table())
    batch = inputs({"frames": frames})  # frames uint8 [B, T, H, W, C]
    x = to_model_frames(frames)
    actions = world.lam.infer_actions(x)  # (B, T-1)
    assert torch.equal(batch["actions"][:, :-1], actions) and torch.equal(batch["tokens"], world.tokenizer.encode(x))
    for t in range(3):
        shift = torch.tensor(SHIFTS)[actions[:, t]]
        assert torch.equal(batch["previous"][:, t + 1], world.tokenizer.encode_moved(x[:, t], shift))
    assert torch.equal(batch["previous"][:, 0], batch["tokens"][:, 0])
    world.dynamics.loss(batch)  # the batch is what the dynamics trains on
