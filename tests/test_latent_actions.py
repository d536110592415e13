"""Genie latent action model: shapes, causality, the action bottleneck, dead codes, learning a shift world, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nextworld.errors import UserInputError
from nextworld.models.base import load_pretrained, save_pretrained
from nextworld.data.camera import translate
from nextworld.models.genie.latent_actions import (SHIFT_CLASSES, LatentActionConfig, LatentActionModel, class_of_shift,
                                                   shift_of_class)

TINY = LatentActionConfig(image_size=16, channels=3, patch=4, dim=32, depth=1, heads=4, num_actions=8,
                          action_dim=8, max_frames=4)
B, T = 2, 4

pytestmark = pytest.mark.usefixtures("one_thread")


def make(config: LatentActionConfig = TINY) -> LatentActionModel:
    torch.manual_seed(0)
    return LatentActionModel(config).eval()


def frames(seed: int = 1, batch: int = B) -> torch.Tensor:
    """Random frames float [batch, T, C, H, W] in [0, 1]."""
    return torch.rand(batch, T, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- a world with 4 known moves

STEP = 2
MOVES = torch.tensor([(0, STEP), (0, -STEP), (STEP, 0), (-STEP, 0)])  # (dy, dx) of the content


def shift_world(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n clips of a camera panning over a canvas: each frame is the previous one shifted by one of 4 moves.

    The canvas has an x-ramp in red, a y-ramp in green and a coarse random texture in blue;
    move m shifts the content of the 16x16 view by ``MOVES[m]`` (content that leaves the
    view is gone, new content enters at the opposite edge).
    Returns frames uint8 [n, T, 16, 16, 3] and the true moves int64 [n, T-1].
    """
    g = torch.Generator().manual_seed(seed)
    margin = STEP * (T - 1)
    size = 16 + 2 * margin + 4
    ramp = torch.arange(float(size)) / (size - 1)
    coarse = torch.rand(n, 1, size // 4 + 1, size // 4 + 1, generator=g)
    texture = torch.nn.functional.interpolate(coarse, scale_factor=4.0, mode="nearest")[:, 0, :size, :size]
    canvas = torch.stack([ramp.expand(n, size, size), ramp[:, None].expand(n, size, size), texture], dim=-1)
    corner = margin + torch.randint(0, 5, (n, 2), generator=g)  # (n, 2) top-left (y, x) of the view
    moves = torch.randint(0, len(MOVES), (n, T - 1), generator=g)
    views = []
    for t in range(T):
        views.append(torch.stack([canvas[i, y:y + 16, x:x + 16] for i, (y, x) in enumerate(corner.tolist())]))
        if t < T - 1:
            corner = corner - MOVES[moves[:, t]]  # the view moves against the content
    return (torch.stack(views, dim=1) * 255).round().to(torch.uint8), moves


def to_float(clips: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, C] -> float [B, T, C, H, W] in [0, 1]."""
    return clips.permute(0, 1, 4, 2, 3).float() / 255


def normalised_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) / mean(H(a), H(b)) of two label arrays (scikit-learn's arithmetic NMI)."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mutual = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
    entropy = [-(q[q > 0] * np.log(q[q > 0])).sum() for q in (pa, pb)]
    return float(mutual / np.mean(entropy))


# ---------------------------------------------------------------------------- tests


def test_shapes_and_loss_metrics() -> None:
    model = make()
    x = frames()
    actions = model.infer_actions(x)
    assert actions.shape == (B, T - 1) and actions.dtype == torch.int64
    assert 0 <= int(actions.min()) and int(actions.max()) < TINY.num_actions
    pred, q = model(x)
    assert pred.shape == (B, T - 1, 3, 16, 16) and q.z.shape == (B, T - 1, TINY.action_dim)
    nxt = model.predict_next(x[:, :2], actions[:, :2])
    assert nxt.shape == (B, 3, 16, 16) and nxt.min() >= 0 and nxt.max() <= 1
    torch.testing.assert_close(nxt, pred[:, 1].clamp(0, 1))
    clips = (x.permute(0, 1, 3, 4, 2) * 255).to(torch.uint8)  # (B, T, H, W, C)
    loss, metrics = model.loss({"frames": clips})
    assert loss.dim() == 0 and loss.requires_grad
    assert set(metrics) == {"losses/lam_recon", "losses/lam_vq", "charts/lam_psnr", "charts/action_usage",
                            "charts/action_perplexity"}
    assert 0 < metrics["charts/action_usage"] <= 1 and 1 <= metrics["charts/action_perplexity"] <= TINY.num_actions


def test_loss_is_a_mean_over_clips() -> None:
    model = make()  # eval mode: no code restarts, so the calls see the same codebook
    clips = (frames(batch=3).permute(0, 1, 3, 4, 2) * 255).to(torch.uint8)
    both = model.loss({"frames": clips})[0]
    each = [model.loss({"frames": clips[i:i + 1]})[0] for i in range(3)]
    torch.testing.assert_close(both, torch.stack(each).mean())


@pytest.mark.parametrize("differences", [False, True], ids=["frames", "frames+differences"])
@pytest.mark.parametrize("t", [0, 1])
def test_later_frames_change_neither_earlier_actions_nor_earlier_predictions(t: int, differences: bool) -> None:
    model = make(dataclasses.replace(TINY, pixel_differences=differences))
    x = frames()
    other = x.clone()
    other[:, t + 2:] = torch.rand_like(other[:, t + 2:])
    pred, q = model(x)
    pred_other, q_other = model(other)
    # transition t -> t+1 and the prediction of frame t+1 may only read frames <= t+1
    assert torch.equal(q.z[:, :t + 1], q_other.z[:, :t + 1])
    assert torch.equal(q.indices[:, :t + 1], q_other.indices[:, :t + 1])
    assert torch.equal(pred[:, :t + 1], pred_other[:, :t + 1])
    assert not torch.equal(q.z[:, t + 1:], q_other.z[:, t + 1:])


def test_next_frame_reaches_its_prediction_only_through_the_action() -> None:
    model = make()
    t = 1
    context = frames(seed=2, batch=1)[:, :t + 1]  # (1, 2, C, H, W), frames 0..t
    # num_actions + 1 different next frames: two of them must share an action (pigeonhole)
    candidates = torch.rand(TINY.num_actions + 1, 1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    clips = [torch.cat([context, c[None]], dim=1) for c in candidates]  # each (1, 3, C, H, W)
    actions = [int(model.infer_actions(c)[0, t]) for c in clips]
    i = next(i for i in range(len(actions)) if actions[i] in actions[:i])
    j = actions.index(actions[i])
    (pred_i, q_i), (pred_j, q_j) = model(clips[i]), model(clips[j])
    assert not torch.equal(q_i.z[:, t], q_j.z[:, t])  # the encoder did see two different frames...
    assert torch.equal(pred_i[:, t], pred_j[:, t])  # ...but the decoder got only their common action
    # and the action does matter: another one gives another prediction
    a = model.infer_actions(clips[i])
    other = a.clone()
    other[:, t] = (a[:, t] + 1) % TINY.num_actions
    assert not torch.equal(model.predict_next(context, a), model.predict_next(context, other))


def test_infer_actions_in_train_mode_leaves_the_codebook_alone() -> None:
    model = make().train()
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    model.infer_actions(frames())
    assert all(torch.equal(before[k], v) for k, v in model.quantizer.state_dict().items())


def test_dead_action_codes_are_restarted_from_the_batch() -> None:
    model = make().train()
    clips = (frames(batch=4).permute(0, 1, 3, 4, 2) * 255).to(torch.uint8)
    model.loss({"frames": clips})  # the first training step initialises the codebook from data
    vq = model.quantizer
    with torch.no_grad():
        # a collapsed codebook: every code a copy of code 0 (ties go to the lowest index), unused
        vq.codebook[1:] = vq.codebook[:1]
        vq.usage.copy_(torch.tensor([1.0] + [0.0] * (TINY.num_actions - 1)))
    assert len(model.infer_actions(to_float(clips)).unique()) == 1
    dead_rows = vq.codebook[1:].detach().clone()
    _, metrics = model.loss({"frames": clips})
    assert not torch.equal(vq.codebook[1:].detach(), dead_rows)
    assert metrics["charts/action_usage"] > 1 / TINY.num_actions  # the revived codes are picked at once
    assert len(model.infer_actions(to_float(clips)).unique()) > 1


def test_tiny_lam_learns_the_moves_of_a_shift_world() -> None:
    model = make().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for step in range(300):
        clips, _ = shift_world(16, seed=1000 + step)  # fresh clips every step: learn the moves, not the clips
        loss, _ = model.loss({"frames": clips})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    start, end = np.mean(losses[:5]), np.mean(losses[-10:])
    assert end < 0.25 * start, (start, end)
    held_out, moves = shift_world(64, seed=7)
    actions = model.infer_actions(to_float(held_out))
    nmi = normalised_mutual_information(actions.flatten().numpy(), moves.flatten().numpy())
    assert nmi > 0.5, nmi


@pytest.mark.parametrize("changes, message", [
    ({"patch": 5}, "not divisible by patch"),
    ({"dim": 30}, "not divisible by heads"),
    ({"num_actions": 1}, "num_actions >= 2"),
    ({"max_frames": 1}, "max_frames >= 2"),
])
def test_bad_config_is_a_user_error(changes: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        dataclasses.replace(TINY, **changes)


def test_bad_inputs_are_named() -> None:
    model = make()
    x = frames()
    with pytest.raises(ValueError, match="expects frames"):
        model.infer_actions(x[:, :, :1])
    with pytest.raises(ValueError, match="2 to 4 frames"):
        model.infer_actions(x[:, :1])
    with pytest.raises(ValueError, match=r"must lie in \[0, 8\)"):
        model.predict_next(x[:, :2], torch.full((B, 2), TINY.num_actions))
    with pytest.raises(ValueError, match="expects actions"):
        model.predict_next(x[:, :2], torch.zeros(B, 3, dtype=torch.int64))


def test_save_and_load_through_the_registry(tmp_path) -> None:
    model = make()
    save_pretrained(model, tmp_path, "genie-lam")
    loaded = load_pretrained(tmp_path, family="genie-lam").eval()
    x = frames()
    assert loaded.config == model.config
    assert torch.equal(loaded.infer_actions(x), model.infer_actions(x))
    assert torch.equal(loaded(x)[0], model(x)[0])


# ---------------------------------------------------------------------------- naming the camera's motion

MOTION = LatentActionConfig(image_size=32, channels=3, patch=8, dim=32, depth=1, heads=4, num_actions=8,
                            action_dim=8, max_frames=4, motion_weight=0.5)


def panning_clips(shifts: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 [B, T, 32, 32, 3]: a smooth random texture moved by ``shifts`` int [B, T-1, 2] each step."""
    b, steps = shifts.shape[:2]
    g = torch.Generator().manual_seed(seed)
    frame = torch.nn.functional.interpolate(torch.rand(b, 3, 8, 8, generator=g), size=(32, 32), mode="bilinear",
                                            align_corners=False)
    clip = [frame]
    for t in range(steps):
        clip.append(translate(clip[-1], shifts[:, t]))
    return (torch.stack(clip, dim=1).permute(0, 1, 3, 4, 2) * 255).round().to(torch.uint8)


def test_shift_classes_round_trip() -> None:
    shifts = torch.tensor([[-4, -4], [0, 0], [4, 4], [-1, 3], [2, -4]])
    classes = class_of_shift(shifts)
    assert classes.tolist() == [0, 40, 80, 34, 54]  # (dy + 4) * 9 + (dx + 4)
    assert torch.equal(shift_of_class(classes), shifts)
    assert torch.equal(class_of_shift(shift_of_class(torch.arange(SHIFT_CLASSES))), torch.arange(SHIFT_CLASSES))


def test_a_genie_lam_has_no_motion_head() -> None:
    model = make()
    assert model.motion_head is None and model.action_shifts() is None
    _, metrics = model.loss({"frames": (frames() * 255).to(torch.uint8).permute(0, 1, 3, 4, 2)})
    assert "losses/lam_motion" not in metrics


def test_motion_loss_reads_the_camera_shift_off_the_frames() -> None:
    model = make(MOTION)
    shifts = torch.tensor([[[0, 1], [-3, 0], [2, -2]], [[0, 0], [1, 1], [-4, 4]]])  # (B, T-1, 2)
    clips = panning_clips(shifts)
    loss, metrics = model.loss({"frames": clips})
    pred, q = model(to_float(clips))
    logits = model.motion_head(model.quantizer.indices_to_codes(q.indices))  # from each action's code alone
    motion = torch.nn.functional.cross_entropy(logits.flatten(0, 1), class_of_shift(shifts).flatten())
    torch.testing.assert_close(metrics["losses/lam_motion"], motion)
    recon = torch.nn.functional.mse_loss(pred, to_float(clips)[:, 1:])
    torch.testing.assert_close(loss, recon + q.loss + MOTION.motion_weight * motion)
    loss.backward()
    assert model.motion_head.weight.grad.abs().sum() > 0 and model.to_action.weight.grad.abs().sum() > 0


def test_action_shifts_are_the_motion_heads_choice_per_code() -> None:
    model = make(MOTION)
    named = torch.tensor([[0, 0], [0, 1], [0, -1], [-4, 0], [4, 0], [-4, 1], [-4, -1], [1, 0]])
    with torch.no_grad():  # make each code's logits peak at its chosen class, whatever the code's vector
        codes = model.quantizer.indices_to_codes(torch.arange(8))  # (8, action_dim)
        model.motion_head.weight.zero_()
        model.motion_head.bias.zero_()
        model.motion_head.weight[class_of_shift(named)] = 50 * codes / codes.norm(dim=-1, keepdim=True)
    assert torch.equal(model.action_shifts(), named)
    with pytest.raises(UserInputError, match="motion_weight"):
        dataclasses.replace(MOTION, motion_weight=-1.0)
    with pytest.raises(UserInputError, match="larger than 16 pixels"):
        dataclasses.replace(TINY, motion_weight=0.1)  # 16x16 frames: too small to search shifts


def test_a_wider_motion_bound_reads_and_names_moves_beyond_four_pixels() -> None:
    wide = dataclasses.replace(MOTION, motion_max_shift=6)
    model = make(wide)
    assert model.motion_head.out_features == 13 * 13
    shifts = torch.tensor([[[0, 6], [-5, 0], [2, -2]], [[6, -6], [1, 1], [-4, 5]]])  # (B, T-1, 2), most beyond 4
    clips = panning_clips(shifts, seed=3)
    _, metrics = model.loss({"frames": clips})
    _, q = model(to_float(clips))
    logits = model.motion_head(model.quantizer.indices_to_codes(q.indices))
    truth = class_of_shift(shifts, 6)
    assert torch.equal(shift_of_class(truth, 6), shifts)
    torch.testing.assert_close(metrics["losses/lam_motion"],
                               torch.nn.functional.cross_entropy(logits.flatten(0, 1), truth.flatten()))
    named = torch.tensor([[0, 0], [6, 0], [-6, 0], [0, 5], [0, -5], [6, 6], [-3, 2], [1, 0]])
    with torch.no_grad():
        codes = model.quantizer.indices_to_codes(torch.arange(8))
        model.motion_head.weight.zero_()
        model.motion_head.bias.zero_()
        model.motion_head.weight[class_of_shift(named, 6)] = 50 * codes / codes.norm(dim=-1, keepdim=True)
    assert torch.equal(model.action_shifts(), named)
    with pytest.raises(UserInputError, match="motion_max_shift must be an integer >= 1"):
        dataclasses.replace(MOTION, motion_max_shift=0)
    with pytest.raises(UserInputError, match="larger than 32 pixels to read camera shifts of up to 12"):
        dataclasses.replace(MOTION, motion_max_shift=12)


def test_modal_action_shifts_are_each_actions_most_common_camera_shift() -> None:
    from collections import Counter

    from nextworld.models.genie.latent_actions import infer_actions_windowed, modal_action_shifts

    model = make(dataclasses.replace(MOTION, motion_max_shift=6)).eval()
    g = torch.Generator().manual_seed(5)
    moves = torch.tensor([[0, 0], [0, 6], [-5, 0], [2, -2]])
    batches, seen = [], {}
    for seed in range(3):
        shifts = moves[torch.randint(0, 4, (6, 5), generator=g)]  # (B, T-1, 2), some beyond 4 pixels
        x = to_float(panning_clips(shifts, seed=seed))
        batches.append(x)
        for a, s in zip(infer_actions_windowed(model, x).flatten().tolist(), shifts.reshape(-1, 2).tolist()):
            seen.setdefault(a, Counter())[tuple(s)] += 1
    modal = modal_action_shifts(model, iter(batches))
    named = model.action_shifts()
    for a in range(model.num_actions):
        if a not in seen:
            assert modal[a].tolist() == named[a].tolist(), "an action that labels nothing keeps the head's choice"
            continue
        top = max(seen[a].values())  # ties go to the smallest move, then the lowest class
        expected = min((s for s, n in seen[a].items() if n == top),
                       key=lambda s: (abs(s[0]) + abs(s[1]), int(class_of_shift(torch.tensor(s), 6))))
        assert tuple(modal[a].tolist()) == expected
    with pytest.raises(ValueError, match="names no shifts"):
        modal_action_shifts(make(), iter(batches))


def test_a_saved_config_without_motion_max_shift_reads_moves_of_up_to_four_pixels() -> None:
    from nextworld.models.base import config_from_dict

    saved = dataclasses.asdict(MOTION)
    del saved["motion_max_shift"]  # configs saved before the field existed
    config = config_from_dict(LatentActionConfig, saved, "old/config.json")
    assert config.motion_max_shift == 4
    assert make(config).motion_head.out_features == SHIFT_CLASSES == 81
