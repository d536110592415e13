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
    ({"arch": "vit"}, "'conv' or 'st'"),
    ({"arch": "st", "st_dim": 30, "st_heads": 4}, "not divisible by st_heads"),
    ({"arch": "st", "st_max_frames": 0}, "must be >= 1"),
    ({"arch": "st", "downsample": 3}, "not divisible"),
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


# ---------------------------------------------------------------------------- arch "st" (ST-ViViT)

ST = dataclasses.replace(SMALL, arch="st", st_dim=32, st_depth=1, st_heads=2, st_max_frames=4)


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_st_encode_decode_shapes_for_one_frame_and_many(quantizer: str) -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(dataclasses.replace(ST, quantizer=quantizer)).eval()
    frames = torch.rand(2, 6, 3, 16, 16)  # 6 frames: a window of 4 and one of 2
    for t in (1, 6):
        tokens = model.encode(frames[:, :t])
        assert tokens.shape == (2, t, 4, 4) and tokens.dtype == torch.int64 and int(tokens.max()) < model.num_codes
        out = model.decode(tokens)
        assert out.shape == (2, t, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
        torch.testing.assert_close(model.reconstruct(frames[:, :t]), out)
    # a lone frame is encoded as the first frame of a clip is: it has no past either way
    assert torch.equal(model.encode(frames[:, :1]), model.encode(frames)[:, :1])
    # non-power-of-two patches are fine for 'st' (no stride-2 stages)
    odd = VideoTokenizer(dataclasses.replace(ST, image_size=12, downsample=3)).eval()
    assert odd.encode(torch.rand(1, 2, 3, 12, 12)).shape == (1, 2, 4, 4)


def test_st_is_causal_within_windows_of_st_max_frames() -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(ST).eval()
    frames = torch.rand(1, 6, 3, 16, 16)
    tokens, recon = model.encode(frames), model.reconstruct(frames)
    changed = frames.clone()
    changed[:, 2] = torch.rand(3, 16, 16)
    tokens2, recon2 = model.encode(changed), model.reconstruct(changed)
    assert torch.equal(tokens2[:, :2], tokens[:, :2]) and torch.equal(recon2[:, :2], recon[:, :2])
    assert not torch.equal(recon2[:, 3], recon[:, 3])  # frame 3 attends to frame 2
    assert torch.equal(tokens2[:, 4:], tokens[:, 4:]) and torch.equal(recon2[:, 4:], recon[:, 4:])  # next window
    windows = torch.cat([model.encode(frames[:, :4]), model.encode(frames[:, 4:])], dim=1)
    assert torch.equal(windows, tokens)


def test_st_loss_reconstructs_a_contiguous_window_of_each_clip() -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(ST)
    frames = torch.arange(8, dtype=torch.uint8).mul(30).view(1, 8, 1, 1, 1).expand(3, 8, 16, 16, 3)  # frame t = 30 t
    seen = []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    for _ in range(5):
        model.loss({"frames": frames})
    for x in seen:
        assert x.shape == (3, 4, 3, 16, 16)  # one window of st_max_frames per clip; loss_frames is not used
        t = (x[:, :, 0, 0, 0] * 255 / 30).round()  # (B, 4) frame indices
        assert torch.equal(t.diff(dim=1), torch.ones(3, 3))


def test_st_overfits_one_clip(tiny_dataset: Path) -> None:
    torch.manual_seed(0)
    batch = {"frames": clips(tiny_dataset, length=4)[0]["frames"][None]}  # (1, 4, 16, 16, 3)
    model = VideoTokenizer(ST)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, metrics = model.loss(batch)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.1 * losses[0]  # about 0.025 x over seeds 0-2
    assert metrics["charts/psnr"] > 18  # about 20.4 dB


def test_st_save_load_round_trip_gives_identical_outputs(tmp_path: Path, tiny_dataset: Path) -> None:
    torch.manual_seed(0)
    model = VideoTokenizer(ST)
    model.loss({"frames": clips(tiny_dataset)[0]["frames"][None]})
    model.eval()
    save_pretrained(model, tmp_path / "ckpt", "genie-tokenizer")
    loaded = load_pretrained(tmp_path / "ckpt", family="genie-tokenizer").eval()
    assert isinstance(loaded, VideoTokenizer) and loaded.config == model.config and loaded.config.arch == "st"
    frames = torch.rand(2, 5, 3, 16, 16)
    assert torch.equal(loaded.encode(frames), model.encode(frames))
    assert torch.equal(loaded.reconstruct(frames), model.reconstruct(frames))
