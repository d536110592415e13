"""Shared fixtures: small synthetic datasets made offline inside the test session."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from nextworld.data.episode_format import Episode
from nextworld.data.episode_writer import EpisodeWriter


def make_dataset(root: Path, lengths: list[int], *, size: int = 16, n_actions: int = 4,
                 shard_frames: int = 64, seed: int = 0) -> Path:
    """A dataset of moving-square episodes with discrete actions and a position label.

    Frame t of an episode has a bright square whose position encodes (episode, t), so a
    test can tell from pixels alone which row it read.
    """
    rng = np.random.default_rng(seed)
    with EpisodeWriter(root, fps=10, frame_shape=(size, size, 3), action_space=gym.spaces.Discrete(n_actions),
                       source={"kind": "synthetic"}, labels={"position": ((2,), "float32")},
                       shard_frames=shard_frames) as w:
        for e, n in enumerate(lengths):
            frames = np.zeros((n, size, size, 3), np.uint8)
            pos = np.zeros((n, 2), np.float32)
            for t in range(n):
                y, x = (e * 3 + t) % (size - 2), (e * 5 + 2 * t) % (size - 2)
                frames[t, y:y + 2, x:x + 2] = 255
                frames[t, :, :, 2] = e % 256
                frames[t, 0, 0, 1] = t % 256
                pos[t] = (y, x)
            w.add(Episode(frames=frames, actions=rng.integers(0, n_actions, n),
                          rewards=rng.normal(size=n).astype(np.float32),
                          terminations=np.arange(n) == n - 1, truncations=np.zeros(n, bool),
                          labels={"position": pos}, level=e, seed=1000 + e))
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds", [20, 5, 33, 17, 40, 9])


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: at test sizes, synchronising threads costs more than
    the arithmetic, and far more when the cores are shared with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_world(root: Path, *, size: int = 16, num_actions: int = 4, max_frames: int = 6, seed: int = 0,
               copy_path: bool = False) -> Path:
    """An untrained, very small Genie world directory (tokenizer, lam, dynamics, world.json)
    for frames of ``size`` x ``size``: fast to build and to play, for tests of the plumbing
    (``copy_path``: its dynamics may keep the last frame's tokens, and has a keep bias)."""
    from nextworld.models.base import save_pretrained
    from nextworld.models.genie import (DynamicsConfig, GenieDynamics, LatentActionConfig, LatentActionModel,
                                        TokenizerConfig, VideoTokenizer)
    from nextworld.models.genie.training import write_world_file

    torch.manual_seed(seed)
    tok = VideoTokenizer(TokenizerConfig(image_size=size, downsample=4, width=8, num_res_blocks=0,
                                         codebook_size=16, code_dim=4))
    lam = LatentActionModel(LatentActionConfig(image_size=size, patch=4, dim=16, depth=1, heads=2,
                                               num_actions=num_actions, action_dim=4, max_frames=max_frames))
    dyn = GenieDynamics(DynamicsConfig(num_codes=16, token_grid=tok.config.token_grid, num_actions=num_actions,
                                       dim=16, depth=1, heads=2, max_frames=max_frames, copy_path=copy_path))
    for name, model, family in (("tokenizer", tok, "genie-tokenizer"), ("lam", lam, "genie-lam"),
                                ("dynamics", dyn, "genie-dynamics")):
        save_pretrained(model, root / name, family)
    write_world_file(root)
    return root


@pytest.fixture
def tiny_world(tmp_path: Path) -> Path:
    """A playable (untrained) Genie world for 16x16 frames with 4 latent actions."""
    return make_world(tmp_path / "world")
