"""Genie video tokenizer: shapes, training signal, checkpoints, evaluation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.windows import ClipDataset, WindowSpec
from nextworld.errors import UserInputError
from nextworld.eval.tokenizer_eval import evaluate_tokenizer
from nextworld.models.base import family_names, load_pretrained, save_pretrained
from nextworld.models.genie import TOKENIZER_PRESETS, TokenizerConfig, VideoTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = TokenizerConfig(image_size=16, downsample=4, width=32, num_res_blocks=1, codebook_size=64, code_dim=8)


def clips(root: Path, length: int = 4) -> ClipDataset:
    return ClipDataset(EpisodeDataset(root), WindowSpec(length=length, stride=4))


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_encode_decode_shapes(quantizer: str) -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(dataclasses.replace(SMALL, image_size=32, downsample=8, quantizer=quantizer)).eval()
    frames = torch.rand(2, 3, 3, 32, 32)
    tokens = model.encode(frames)
    assert tokens.shape == (2, 3, 4, 4) and tokens.dtype == torch.int64
    assert model.config.token_grid == (4, 4)
    assert int(tokens.max()) < model.num_codes
    out = model.decode(tokens)
    assert out.shape == frames.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(model.reconstruct(frames), out)


def test_presets_build_and_are_registered() -> None:
    assert "genie-tokenizer" in family_names()
    grids = {name: config.token_grid for name, config in TOKENIZER_PRESETS.items()}
    assert grids == {"tiny": (16, 16), "small": (16, 16), "base": (16, 16)}
    tiny = VideoTokenizer(TOKENIZER_PRESETS["tiny"])
    assert sum(p.numel() for p in tiny.parameters()) < 1_000_000  # trains in minutes on 2 CPU cores


def test_dynamics_presets_fit_their_tokenizers() -> None:
    from nextworld.models.genie.presets import DYNAMICS_SHAPES, LAM_PRESETS, dynamics_config

    for name, tokenizer in TOKENIZER_PRESETS.items():
        config = dynamics_config(name, tokenizer, tokenizer.codebook_size, LAM_PRESETS[name].num_actions)
        assert tuple(config.token_grid) == tokenizer.token_grid and config.num_codes == tokenizer.codebook_size
        assert config.positions_per_frame <= 256 and config.max_frames == DYNAMICS_SHAPES[name]["max_frames"]
    assert dynamics_config("tiny", TOKENIZER_PRESETS["tiny"], 512, 8).positions_per_frame == 64  # CPU-sized


@pytest.mark.parametrize("changes, message", [
    ({"downsample": 6}, "power of two"),
    ({"image_size": 18}, "not divisible"),
    ({"downsample": 1}, "power of two"),
    ({"quantizer": "kmeans"}, "'vq' or 'fsq'"),
    ({"quantizer": "fsq", "fsq_levels": (8, 1)}, ">= 2 levels"),
])
def test_bad_config_is_a_user_error(changes: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        dataclasses.replace(SMALL, **changes)


def test_frames_of_the_wrong_size_are_refused() -> None:
    # a caller bug, not a user error: user-facing paths check frame shapes before the model
    with pytest.raises(ValueError, match=r"frames \[B, T, 3, 16, 16\]"):
        VideoTokenizer(SMALL).encode(torch.rand(1, 2, 3, 32, 32))


def test_encode_in_training_mode_leaves_the_codebook_alone() -> None:
    model = VideoTokenizer(SMALL).train()
    before = model.quantizer.codebook.detach().clone()
    model.encode(torch.rand(1, 2, 3, 16, 16))
    torch.testing.assert_close(model.quantizer.codebook.detach(), before)


def test_loss_metrics_and_frame_subsampling(tiny_dataset: Path) -> None:
    data = clips(tiny_dataset, length=8)
    batch = {"frames": torch.stack([data[i]["frames"] for i in range(2)])}  # (2, 8, 16, 16, 3)
    model = VideoTokenizer(dataclasses.replace(SMALL, loss_frames=3))
    seen = []
    model.quantizer.register_forward_hook(lambda module, args, out: seen.append(out.indices.shape))
    loss, metrics = model.loss(batch)
    assert loss.shape == () and loss.requires_grad
    assert set(metrics) == {"losses/recon", "losses/quantizer", "charts/psnr", "charts/codebook_usage",
                            "charts/perplexity"}
    assert 0 < metrics["charts/codebook_usage"] <= 1
    assert seen == [(2 * 3, 4, 4)]  # 3 of 8 frames per clip, 4x4 tokens each


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_overfits_one_clip(tiny_dataset: Path, quantizer: str) -> None:
    torch.manual_seed(0)
    batch = {"frames": clips(tiny_dataset, length=8)[0]["frames"][None]}  # (1, 8, 16, 16, 3)
    model = VideoTokenizer(dataclasses.replace(SMALL, quantizer=quantizer, loss_frames=0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, metrics = model.loss(batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    assert metrics["charts/psnr"] > 25


def test_save_load_round_trip_gives_identical_outputs(tmp_path: Path, tiny_dataset: Path) -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(SMALL)
    model.loss({"frames": clips(tiny_dataset)[0]["frames"][None]})  # a training step fills the usage buffer
    model.eval()
    save_pretrained(model, tmp_path / "ckpt", "genie-tokenizer")
    loaded = load_pretrained(tmp_path / "ckpt", family="genie-tokenizer").eval()
    assert isinstance(loaded, VideoTokenizer) and loaded.config == model.config
    frames = torch.rand(2, 3, 3, 16, 16)
    assert torch.equal(loaded.encode(frames), model.encode(frames))
    assert torch.equal(loaded.reconstruct(frames), model.reconstruct(frames))
    assert torch.equal(loaded.quantizer.usage, model.quantizer.usage)


def test_fsq_config_round_trips_through_json(tmp_path: Path) -> None:
    model = VideoTokenizer(dataclasses.replace(SMALL, quantizer="fsq", fsq_levels=(5, 3, 3)))
    save_pretrained(model, tmp_path, "genie-tokenizer")
    loaded = load_pretrained(tmp_path)
    assert loaded.config.fsq_levels == (5, 3, 3) and loaded.num_codes == 45


def test_evaluate_tokenizer_is_deterministic_and_restores_mode(tiny_dataset: Path) -> None:
    torch.manual_seed(0)
    data = clips(tiny_dataset)
    model = VideoTokenizer(SMALL).train()
    first = evaluate_tokenizer(model, data, max_clips=5, batch_size=2)
    assert model.training
    assert first == evaluate_tokenizer(model, data, max_clips=5, batch_size=2)
    assert evaluate_tokenizer(model, data, max_clips=5, batch_size=3) == pytest.approx(first)
    assert set(first) == {"tokenizer_psnr", "tokenizer_ssim", "codebook_usage", "num_frames"}
    assert first["num_frames"] == 5 * 4
    assert 0 < first["codebook_usage"] <= 1 and -1 <= first["tokenizer_ssim"] <= 1
    assert evaluate_tokenizer(model, data, max_clips=1000)["num_frames"] == len(data) * 4
