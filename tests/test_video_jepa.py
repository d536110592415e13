"""Video JEPA: the EMA pieces, multi-block tube masks, the model's shapes, gradients, EMA step, learning, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from nextworld.errors import UserInputError
from nextworld.models.base import load_pretrained, save_pretrained
from nextworld.models.jepa.masks import multiblock_mask, sample_masks
from nextworld.models.jepa.video_jepa import VIDEO_JEPA_PRESETS, VideoJEPA, VideoJEPAConfig
from nextworld.nn.ema import ema_decay, ema_update, make_target

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = VideoJEPAConfig(frame_shape=(16, 16, 3), frames=4, tubelet=2, patch=4, dim=32, depth=2, heads=4,
                       predictor_dim=16, predictor_depth=1, predictor_heads=2)
B = 2


def make(config: VideoJEPAConfig = TINY) -> VideoJEPA:
    torch.manual_seed(0)
    return VideoJEPA(config)


def clips(n: int, seed: int = 1) -> torch.Tensor:
    """n clips uint8 [n, 4, 16, 16, 3] of a 4x4 square moving with a constant velocity over a coloured background."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.zeros(n, 4, 16, 16, 3, dtype=torch.uint8)
    frames[..., 2] = torch.randint(0, 128, (n, 1, 1, 1), generator=g, dtype=torch.uint8)
    start = torch.randint(0, 7, (n, 2), generator=g)
    velocity = torch.randint(-1, 2, (n, 2), generator=g) * 2
    for i in range(n):
        for t in range(4):
            y, x = (start[i] + 3 + velocity[i] * t).tolist()
            frames[i, t, y:y + 4, x:x + 4, :2] = 255
    return frames


# ---------------------------------------------------------------------------- EMA


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_make_target_copies_weights_without_gradients() -> None:
    online = small_net()
    target = make_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for (_, t), (_, o) in zip(target.state_dict().items(), online.state_dict().items()):
        assert torch.equal(t, o) and t.data_ptr() != o.data_ptr()


def test_ema_update_averages_parameters_and_float_buffers() -> None:
    online, target = small_net(), small_net()
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online[1].running_mean.fill_(2.0)
    online[1].num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    expected = {k: (before[k] + v) / 2 for k, v in online.state_dict().items() if v.is_floating_point()}

    ema_update(target, online, 0.5)
    after = target.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(after[key], value)
    assert int(after["1.num_batches_tracked"]) == 7  # integer buffers are copied

    averaged = {k: v.clone() for k, v in after.items()}
    ema_update(target, online, 1.0)
    for key, value in target.state_dict().items():
        assert torch.equal(value, averaged[key]) or not value.is_floating_point()


def test_ema_update_rejects_a_bad_decay_and_mismatched_modules() -> None:
    with pytest.raises(ValueError, match="decay"):
        ema_update(small_net(), small_net(), 1.5)
    with pytest.raises(ValueError, match="different parameters"):
        ema_update(nn.Linear(3, 4), small_net(), 0.5)


def test_ema_decay_runs_linearly_from_start_to_end() -> None:
    assert ema_decay(0, 101, 0.996, 1.0) == 0.996
    assert ema_decay(100, 101, 0.996, 1.0) == 1.0
    assert ema_decay(50, 101, 0.996, 1.0) == pytest.approx(0.998)
    assert ema_decay(500, 101, 0.996, 1.0) == 1.0
    assert ema_decay(0, 10) == 0.996 and ema_decay(9, 10) == 1.0  # the defaults are I-JEPA's
    with pytest.raises(ValueError):
        ema_decay(0, 0)


# ---------------------------------------------------------------------------- masks


def test_mask_is_a_union_of_tubes_over_the_whole_time_axis() -> None:
    torch.manual_seed(0)
    for _ in range(20):
        mask = multiblock_mask(4, 8, 6, num_blocks=3, block_scale=(0.1, 0.3))
        assert mask.dtype == torch.bool and mask.shape == (4 * 8 * 6,)
        grid = mask.view(4, 8, 6)
        assert (grid == grid[:1]).all()


def test_mask_coverage_matches_the_block_scale() -> None:
    g = torch.Generator().manual_seed(0)
    one = torch.stack([multiblock_mask(2, 8, 8, num_blocks=1, block_scale=(0.25, 0.25), generator=g)
                       for _ in range(400)]).float().mean(dim=1)
    # a 16-token block of aspect 0.75..1.5 is 3..5 tokens a side
    assert one.min() >= 9 / 64 and one.max() <= 25 / 64
    assert 0.2 < one.mean() < 0.32
    many = torch.stack([multiblock_mask(2, 8, 8, num_blocks=8, block_scale=(0.15, 0.15), generator=g)
                        for _ in range(400)]).float().mean(dim=1)
    assert 0.55 < many.mean() < 0.8  # V-JEPA's short-range mask: overlapping blocks, well under 8 x 0.15


def test_mask_always_leaves_one_context_and_one_target_token() -> None:
    g = torch.Generator().manual_seed(0)
    full = multiblock_mask(3, 4, 4, num_blocks=4, block_scale=(1.0, 1.0), generator=g)
    assert (~full).sum() == 3  # everything was covered: one tube is given back
    for _ in range(200):
        mask = multiblock_mask(1, 1, 2, num_blocks=2, block_scale=(0.5, 1.0), generator=g)
        assert mask.sum() == 1
    with pytest.raises(ValueError, match="grid"):
        multiblock_mask(4, 1, 1, num_blocks=1)


def test_sample_masks_gives_equal_disjoint_counts_across_the_batch() -> None:
    g = torch.Generator().manual_seed(0)
    context, target = sample_masks(16, (4, 8, 8), num_blocks=8, block_scale=(0.15, 0.15), generator=g)
    assert context.dtype == target.dtype == torch.int64
    assert context.shape[0] == target.shape[0] == 16
    assert context.shape[1] >= 1 and target.shape[1] >= 1
    assert context.shape[1] + target.shape[1] <= 256
    for c, t in zip(context, target):
        assert (c.diff() > 0).all() and (t.diff() > 0).all()  # increasing, no repeats
        assert not set(c.tolist()) & set(t.tolist())
        assert 0 <= min(c.min(), t.min()) and max(c.max(), t.max()) < 256


def test_masks_are_deterministic_under_a_generator_and_the_global_seed() -> None:
    def draw(generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        return sample_masks(4, (2, 6, 6), num_blocks=2, block_scale=(0.2, 0.4), generator=generator)

    a, b = draw(torch.Generator().manual_seed(3)), draw(torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = draw(torch.Generator().manual_seed(4))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))
    torch.manual_seed(5)
    d = draw(None)
    torch.manual_seed(5)
    e = draw(None)
    assert all(torch.equal(x, y) for x, y in zip(d, e))


# ---------------------------------------------------------------------------- the model


def test_encode_shapes_for_full_and_shorter_clips() -> None:
    model = make().eval()
    frames = torch.rand(B, 4, 3, 16, 16)
    assert model.encode_tokens(frames).shape == (B, 2, 4, 4, 32)
    assert model.encode_frames(frames).shape == (B, 2, 32)
    assert model.encode(frames).shape == (B, 32)
    assert model.encode_frames(frames[:, :2]).shape == (B, 1, 32)
    assert model.feature_dim == 32
    with pytest.raises(ValueError, match="multiple of tubelet"):
        model.encode(frames[:, :3])
    with pytest.raises(ValueError, match="expects frames"):
        model.encode(torch.rand(B, 4, 3, 8, 8))


def test_features_come_from_the_target_encoder() -> None:
    model = make().eval()
    frames = torch.rand(B, 4, 3, 16, 16)
    before = model.encode(frames)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.5)
    assert torch.equal(model.encode(frames), before)
    with torch.no_grad():
        for p in model.target_encoder.parameters():
            p.add_(0.5)
    assert not torch.allclose(model.encode(frames), before)


def test_loss_is_finite_and_no_gradient_reaches_the_target_encoder() -> None:
    model = make()
    batch = {"frames": clips(B)}  # frames only: no actions needed
    loss, metrics = model.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(metrics) == {"losses/jepa_l1", "charts/target_std", "charts/context_fraction"}
    assert 0 < metrics["charts/context_fraction"] < 1
    assert 0 < float(metrics["charts/target_std"]) <= 1.01
    loss.backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())


def test_after_optimizer_step_moves_the_target_towards_the_online_encoder() -> None:
    model = make()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)

    def gap() -> float:
        return sum(float((t - o).detach().abs().sum()) for t, o in zip(model.target_encoder.parameters(),
                                                               model.encoder.parameters()))

    before = gap()
    model.after_optimizer_step(0, 100)  # decay ema_start = 0.996
    assert gap() == pytest.approx(before * TINY.ema_start, rel=1e-4)
    model.after_optimizer_step(99, 100)  # decay ema_end = 1: the target stays
    assert gap() == pytest.approx(before * TINY.ema_start, rel=1e-6)


def test_loss_falls_when_trained_on_a_fixed_clip_set() -> None:
    model = make()
    data = clips(16)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, foreach=False)
    steps, losses = 60, []
    torch.manual_seed(0)
    for step in range(steps):
        loss, _ = model.loss({"frames": data[(step % 2) * 8:(step % 2) * 8 + 8]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.after_optimizer_step(step, steps)
        losses.append(loss.item())
    start, end = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert end < 0.4 * start, (start, end)  # measured: 0.94 -> 0.24 on three data seeds
    _, metrics = model.loss({"frames": data[:8]})
    assert float(metrics["charts/target_std"]) > 0.1  # fell by predicting, not by collapsing (0.30 at init)


def test_save_and_load_round_trip_gives_identical_features(tmp_path) -> None:
    model = make()
    loss, _ = model.loss({"frames": clips(B)})
    loss.backward()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.sub_(0.1 * p.grad)
        model.after_optimizer_step(0, 10)  # the target now differs from its initial copy
    save_pretrained(model, tmp_path / "jepa", "jepa-video")
    loaded = load_pretrained(tmp_path / "jepa", family="jepa-video")
    assert isinstance(loaded, VideoJEPA) and loaded.config == TINY
    frames = torch.rand(B, 4, 3, 16, 16)
    assert torch.equal(loaded.eval().encode_frames(frames), model.eval().encode_frames(frames))


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(UserInputError, match="not divisible by patch"):
        dataclasses.replace(TINY, patch=5)
    with pytest.raises(UserInputError, match="tubelet"):
        dataclasses.replace(TINY, frames=3)
    with pytest.raises(UserInputError, match="equal length"):
        dataclasses.replace(TINY, mask_num_blocks=(8,))
    with pytest.raises(UserInputError, match="ema_start"):
        dataclasses.replace(TINY, ema_start=1.5)


def test_presets_build_with_the_documented_token_grid() -> None:
    assert VIDEO_JEPA_PRESETS["tiny"].token_grid == (4, 8, 8)
    assert all(p.frame_shape == (64, 64, 3) for p in VIDEO_JEPA_PRESETS.values())


def test_training_engine_resumes_the_ema_and_the_masks_exactly(tmp_path) -> None:
    import signal

    from conftest import make_dataset
    from nextworld.train import TrainConfig, fit
    from train_helpers import clips as dataset_clips

    data = dataset_clips(make_dataset(tmp_path / "ds", [20, 5, 33, 17]))  # 4-frame clips of 16x16, with actions
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup_steps=2, log_every=2, ckpt_every=3, device="cpu",
                      progress=False)
    straight = make()
    fit(straight, "jepa-video", data, cfg, tmp_path / "straight")

    model, calls = make(), 0

    def loss_then_ctrl_c(batch):
        nonlocal calls
        calls += 1
        if calls == 4:  # Ctrl-C during step 4: it finishes, is saved, and fit returns
            signal.raise_signal(signal.SIGINT)
        return VideoJEPA.loss(model, batch)

    model.loss = loss_then_ctrl_c
    assert fit(model, "jepa-video", data, cfg, tmp_path / "split").interrupted
    resumed = make()
    fit(resumed, "jepa-video", data, cfg, tmp_path / "split", resume=True)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(straight.target_encoder.embed.weight, make().target_encoder.embed.weight)
