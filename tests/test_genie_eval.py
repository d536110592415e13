"""Genie's evaluation: NMI, the latent -> real action map, and `nextworld eval` on a playable world."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import make_dataset
from nextworld.cli import main
from nextworld.errors import UserInputError
from nextworld.eval.action_map import LABEL_BUDGET, action_map_report, fit_action_map, labelled_count
from nextworld.eval.evaluate import EvalConfig, evaluate
from nextworld.eval.genie_eval import CLIP_LENGTH, rollout_metrics, spaced_indices
from nextworld.eval.metrics import normalised_mutual_information as nmi

GENIE_KEYS = {"tokenizer_psnr", "tokenizer_ssim", "codebook_usage", "lam_codebook_usage", "psnr_t1", "psnr_t4",
              "psnr_t10", "delta_psnr_t4", "action_nmi", "frames_per_second", "action_map", "action_map_accuracy",
              "action_map_labelled_frames", "action_majority_baseline"}


# ---------------------------------------------------------------------------- NMI


def test_nmi_of_identical_and_permuted_labelings_is_one() -> None:
    a = np.random.default_rng(0).integers(0, 5, 500)
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, np.array([3, 0, 4, 1, 2])[a]) == pytest.approx(1.0)  # names do not matter
    assert nmi(a, a + 100) == pytest.approx(1.0)


def test_nmi_of_independent_labelings_is_near_zero() -> None:
    rng = np.random.default_rng(1)
    assert nmi(rng.integers(0, 4, 20000), rng.integers(0, 6, 20000)) < 0.002


def test_nmi_matches_a_hand_computed_case() -> None:
    # joint p(0,0) = 1/2, p(1,0) = p(1,1) = 1/4; marginals (1/2, 1/2) and (3/4, 1/4)
    mutual = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_a, h_b = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    value = nmi(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]))
    assert value == pytest.approx(mutual / ((h_a + h_b) / 2)) and value == pytest.approx(0.343711, abs=1e-6)
    assert nmi(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert nmi(np.zeros(4, int), np.zeros(4, int)) == 1.0  # scikit-learn's convention
    assert nmi(np.zeros(4, int), np.array([0, 1, 0, 1])) == 0.0


# ---------------------------------------------------------------------------- action map


def test_action_map_recovers_a_permutation_within_the_label_budget() -> None:
    rng = np.random.default_rng(2)
    perm = np.array([2, 0, 3, 1])  # latent k means real action perm[k]
    latent = rng.integers(0, 4, 10000)
    real = perm[latent]
    noisy = rng.random(real.size) < 0.1
    real[noisy] = rng.integers(0, 4, noisy.sum())  # 10% of the recorded actions are unrelated
    frames = real.size + 1000  # transitions plus each clip's last frame, as in 11-frame clips
    labelled = labelled_count(frames, LABEL_BUDGET)
    assert labelled == 110 and labelled <= LABEL_BUDGET * frames
    report = action_map_report(latent, real, num_latent=4, labelled=labelled)
    assert report["action_map"] == perm.tolist()
    assert report["action_map_labelled_frames"] == labelled and report["action_map_test_transitions"] == 10000 - 110
    assert 0.9 < report["action_map_accuracy"] < 0.96  # 90% kept + a quarter of the noise
    assert report["action_majority_baseline"] == pytest.approx(0.25, abs=0.03)


def test_action_map_sends_unseen_latents_to_the_commonest_action_and_refuses_a_big_budget() -> None:
    action_map = fit_action_map(np.array([0, 0, 1, 1, 1]), np.array([5, 5, 2, 2, 5]), num_latent=3)
    assert action_map.tolist() == [5, 2, 5]
    assert labelled_count(99, 0.01) == 0 and labelled_count(300, 0.01) == 3
    with pytest.raises(UserInputError, match="at most 1% of the frames"):
        labelled_count(1000, 0.02)


# ---------------------------------------------------------------------------- eval end to end


class RowReadingWorld:
    """Stands in for a world whose latent action for t -> t+1 is exactly the recorded a_t: it
    reads (episode, t) off frame t's pixels (see ``make_dataset``) and looks the action up."""

    def __init__(self, actions: list[np.ndarray]) -> None:
        self.actions, self.device = actions, torch.device("cpu")
        self.action_space = gym.spaces.Discrete(4)

    def infer_actions(self, frames: torch.Tensor) -> torch.Tensor:
        episode = (frames[:, :-1, 2, 0, 0] * 255).round().long()  # (B, T-1)
        row = (frames[:, :-1, 1, 0, 0] * 255).round().long()
        return torch.tensor([[self.actions[e][t] for e, t in zip(es, ts)] for es, ts in zip(episode.tolist(),
                                                                                            row.tolist())])


def test_latent_actions_pair_with_the_action_recorded_after_the_first_frame(tmp_path: Path) -> None:
    from rich.progress import Progress

    from nextworld.data.windows import WindowSpec, open_clips
    from nextworld.eval.genie_eval import latent_action_metrics

    clips = open_clips(make_dataset(tmp_path / "ds", [110] * 20, seed=4), WindowSpec(CLIP_LENGTH, CLIP_LENGTH),
                       keys=("frames", "actions"))
    world = RowReadingWorld([clips.data.read(e, keys=("actions",))["actions"] for e in range(20)])
    with Progress(disable=True) as bar:
        metrics = latent_action_metrics(world, clips, np.arange(len(clips)), batch_size=50, labelled_fraction=0.01,
                                        real_actions=True, progress=bar)
    assert metrics["action_nmi"] == pytest.approx(1.0) and metrics["action_map_accuracy"] == 1.0
    assert metrics["action_transitions"] == 200 * (CLIP_LENGTH - 1) and metrics["action_map_labelled_frames"] == 22
    assert metrics["lam_codebook_usage"] == 1.0



@pytest.fixture
def heldout(tmp_path: Path) -> Path:
    """8 episodes of 44 frames: 32 eleven-frame clips, 352 frames (3 may be labelled)."""
    return make_dataset(tmp_path / "heldout", [44] * 8, seed=3)


def test_eval_of_a_genie_world_writes_every_metric(tiny_world: Path, heldout: Path, tmp_path: Path,
                                                   one_thread: None) -> None:
    out = tmp_path / "eval" / "eval.json"
    assert main(["eval", str(tiny_world), "--data", str(heldout), "--json", str(out), "--max-clips", "6",
                 "--batch-size", "3", "--sample-steps", "2", "--fps-steps", "4", "--no-progress"]) == 0
    metrics = json.loads(out.read_text())
    assert GENIE_KEYS <= set(metrics)
    for key in ("psnr_t1", "psnr_t4", "psnr_t10", "tokenizer_psnr"):
        assert 0 < metrics[key] < 100, key
    assert math.isfinite(metrics["delta_psnr_t4"]) and abs(metrics["delta_psnr_t4"]) < 100
    assert 0 <= metrics["action_nmi"] <= 1 and 0 < metrics["lam_codebook_usage"] <= 1
    assert metrics["frames_per_second"] > 0
    assert metrics["action_transitions"] == 32 * (CLIP_LENGTH - 1)
    assert metrics["action_map_labelled_frames"] == 3 and len(metrics["action_map"]) == 4
    assert all(0 <= a < 4 for a in metrics["action_map"])
    assert 0 <= metrics["action_map_accuracy"] <= 1 and 0 < metrics["action_majority_baseline"] <= 1
    assert metrics["sample_steps"] == 2 and metrics["num_clips"] == 6
    for k in (1, 4, 10):  # written for every K (their alignment with psnr_tK: the StillWorld test below)
        assert 0 < metrics[f"copy_psnr_t{k}"] < 100
    assert (out.parent / "eval_rollouts.png").is_file() and metrics["rollouts"] == str(out.parent / "eval_rollouts.png")


def test_rollouts_are_seeded_and_leave_the_global_generator_alone(tiny_world: Path, heldout: Path,
                                                                  one_thread: None) -> None:
    from rich.progress import Progress

    from nextworld.data.windows import WindowSpec, open_clips
    from nextworld.play.world import load_world_model

    world = load_world_model(tiny_world)
    world.sample_steps = 2
    clips = open_clips(heldout, WindowSpec(CLIP_LENGTH, CLIP_LENGTH), keys=("frames",))
    indices = spaced_indices(len(clips), 2)
    before = torch.get_rng_state()
    with Progress(disable=True) as bar:
        first, rows = rollout_metrics(world, clips, indices, batch_size=2, seed=5, progress=bar)
        again, _ = rollout_metrics(world, clips, indices, batch_size=2, seed=5, progress=bar)
        other, _ = rollout_metrics(world, clips, indices, batch_size=2, seed=6, progress=bar)
    assert again == first and other != first
    assert torch.equal(before, torch.get_rng_state())
    assert len(rows) == 4 and rows[0].shape == (CLIP_LENGTH - 1, 16, 16, 3) and rows[1].dtype == np.uint8


class StillWorld:
    """A world that never moves, with a lossless tokenizer: its dreams repeat the prompt."""

    device = torch.device("cpu")
    action_space = gym.spaces.Discrete(4)

    class tokenizer:  # noqa: N801 (stands in for a module attribute)
        encode = staticmethod(lambda frames: frames)
        decode = staticmethod(lambda tokens: tokens)

    def infer_actions(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.zeros(frames.shape[0], frames.shape[1] - 1, dtype=torch.long)

    def rollout(self, prompt: torch.Tensor, actions: torch.Tensor, generator=None) -> torch.Tensor:
        return prompt[:, -1:].expand(-1, actions.shape[1], -1, -1, -1)


def test_copy_baseline_is_what_a_world_that_never_moves_scores(heldout: Path) -> None:
    from rich.progress import Progress

    from nextworld.data.windows import WindowSpec, open_clips

    clips = open_clips(heldout, WindowSpec(CLIP_LENGTH, CLIP_LENGTH), keys=("frames",))
    with Progress(disable=True) as bar:
        metrics, _ = rollout_metrics(StillWorld(), clips, spaced_indices(len(clips), 8), batch_size=3, seed=0,
                                     progress=bar)
    for k in (1, 4, 10):
        assert metrics[f"copy_psnr_t{k}"] == pytest.approx(metrics[f"psnr_t{k}"])
    assert metrics["delta_psnr_t4"] == pytest.approx(0.0)
    assert metrics["copy_psnr_t1"] != pytest.approx(metrics["copy_psnr_t10"])  # the squares move: K is read


def test_eval_of_a_run_without_dynamics_reports_the_tokenizer_only(tiny_world: Path, heldout: Path,
                                                                   tmp_path: Path, one_thread: None) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_world / "tokenizer", run / "tokenizer")
    metrics = evaluate(EvalConfig(run=run, data=heldout, max_clips=2, progress=False))
    assert {"tokenizer_psnr", "tokenizer_ssim", "codebook_usage"} <= set(metrics)
    assert not set(metrics) & {"psnr_t1", "action_nmi", "frames_per_second"}


def test_eval_on_episodes_shorter_than_a_clip_is_one_clear_error(tiny_world: Path, tmp_path: Path) -> None:
    short = make_dataset(tmp_path / "short", [5, 10, 8])
    with pytest.raises(UserInputError) as e:
        evaluate(EvalConfig(run=tiny_world, data=short, progress=False))
    message = str(e.value)
    assert "\n" not in message and str(short) in message and f"{CLIP_LENGTH}-frame" in message


def test_eval_refuses_a_label_budget_over_one_percent(tiny_world: Path, heldout: Path) -> None:
    with pytest.raises(UserInputError, match="labelled fraction 0.05"):
        evaluate(EvalConfig(run=tiny_world, data=heldout, labelled_fraction=0.05, progress=False))
