"""Genie dynamics and MaskGIT: schedule, masks, causality, action alignment, cache, determinism, overfitting."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from nextworld.errors import UserInputError
from nextworld.models.base import config_from_dict
from nextworld.models.genie.dynamics import DynamicsConfig, GenieDynamics
from nextworld.nn import maskgit
from nextworld.nn.space_time import KVCache

TINY = DynamicsConfig(num_codes=16, token_grid=(4, 4), num_actions=4, dim=32, depth=2, heads=4, max_frames=6)
PATCHED = dataclasses.replace(TINY, token_patch=2)  # 2x2 tokens per transformer position
B, T = 2, 4


pytestmark = pytest.mark.usefixtures("one_thread")


def make(config: DynamicsConfig = TINY) -> GenieDynamics:
    torch.manual_seed(0)
    return GenieDynamics(config).eval()


def clip(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, TINY.num_codes, (B, T, 4, 4), generator=g),
            torch.randint(0, TINY.num_actions, (B, T), generator=g))


# ---------------------------------------------------------------------------- MaskGIT


def test_cosine_schedule_values() -> None:
    r = torch.tensor([0.0, 1 / 3, 0.5, 1.0], dtype=torch.float64)
    expected = torch.tensor([1.0, math.sqrt(3) / 2, math.sqrt(0.5), 0.0], dtype=torch.float64)
    torch.testing.assert_close(maskgit.cosine_schedule(r), expected, atol=1e-12, rtol=0)


def test_decode_hides_tokens_per_cosine_schedule() -> None:
    seen_hidden = []

    def predict(tokens: torch.Tensor) -> torch.Tensor:
        seen_hidden.append(int((tokens == 99).sum(dim=1).unique().item()))
        return torch.randn(*tokens.shape, 10)

    torch.manual_seed(0)
    out = maskgit.decode(predict, batch=3, num_tokens=16, mask_id=99, steps=4, temperature=1.0)
    # floor(16 * cos(pi/2 * i/4)) for i = 0..3; a linear schedule would give 16, 12, 8, 4
    assert seen_hidden == [16, 14, 11, 6]
    assert out.shape == (3, 16) and int(out.max()) < 10


def test_decode_never_changes_committed_tokens() -> None:
    history = []

    def predict(tokens: torch.Tensor) -> torch.Tensor:
        history.append(tokens.clone())
        return torch.randn(*tokens.shape, 10)

    torch.manual_seed(0)
    out = maskgit.decode(predict, batch=2, num_tokens=16, mask_id=99, steps=5, temperature=2.0)
    for seen in history:
        committed = seen != 99
        assert torch.equal(seen[committed], out[committed])


def test_decode_with_one_step_at_zero_temperature_is_argmax() -> None:
    logits = torch.randn(2, 16, 10)
    out = maskgit.decode(lambda tokens: logits, batch=2, num_tokens=16, mask_id=99, steps=1, temperature=0)
    assert torch.equal(out, logits.argmax(-1))


def test_sampled_masks_hide_ratio_in_range() -> None:
    torch.manual_seed(0)
    mask = maskgit.sample_mask((64, 5, 16), 0.5, 1.0)
    ratio = mask.float().mean(dim=-1)
    assert ratio.min() >= 0.5 and ratio.max() <= 1.0
    assert ratio.std() > 0.05  # ratios are drawn, not fixed


def test_training_keeps_first_frame_and_hides_half_to_all_of_the_others() -> None:
    model = make()
    tokens, actions = clip()
    seen = []
    real_logits = model.logits
    model.logits = lambda t, a, *rest: seen.append(t) or real_logits(t, a, *rest)
    torch.manual_seed(0)
    for _ in range(10):
        model.loss({"tokens": tokens, "actions": actions})
    hidden = torch.stack(seen) == model.mask_id  # (10, B, T, h, w)
    assert not hidden[:, :, 0].any()
    ratio = hidden[:, :, 1:].flatten(3).float().mean(-1)
    assert ratio.min() >= 0.5 and ratio.max() <= 1.0


def hidden_frames(model: GenieDynamics, draws: int, t: int = 6) -> torch.Tensor:
    """bool [draws, B, t]: which frames of a t-frame clip the training loss hid tokens of."""
    tokens = torch.randint(0, TINY.num_codes, (B, t, 4, 4), generator=torch.Generator().manual_seed(3))
    actions = torch.zeros(B, t, dtype=torch.long)
    seen = []
    real_logits = model.logits
    model.logits = lambda x, a, *rest: seen.append(x) or real_logits(x, a, *rest)
    torch.manual_seed(0)
    for _ in range(draws):
        model.loss({"tokens": tokens, "actions": actions})
    return (torch.stack(seen) == model.mask_id).flatten(3).any(-1)


def test_clean_prefix_hides_a_suffix_of_frames_only() -> None:
    hidden = hidden_frames(make(dataclasses.replace(TINY, clean_prefix_prob=1.0)), draws=20)  # (20, B, 6)
    first = hidden.float().argmax(-1)  # the first hidden frame of each clip
    assert (first >= 1).all()
    after_cut = torch.arange(6) >= first[..., None]
    assert torch.equal(hidden, after_cut)  # every frame from the cut on is hidden, none before
    assert len(set(first.flatten().tolist())) >= 3  # the cut varies across clips
    # a share of 0.5: half the clips draw a cut, and a cut of 1 leaves only frame 0 whole as usual,
    # so frame 1 stays whole in 0.5 * (T-2)/(T-1) = 40% of the clips (200 clips: 80 expected)
    half = hidden_frames(make(dataclasses.replace(TINY, clean_prefix_prob=0.5)), draws=100)
    assert 55 <= int((~half[..., 1]).sum()) <= 105
    # Genie's scheme (the default): every frame but the first hides tokens
    default = hidden_frames(make(), draws=5)
    assert not default[..., 0].any() and default[..., 1:].all()


# ---------------------------------------------------------------------------- dynamics


def test_shapes_and_loss_metrics() -> None:
    model = make()
    tokens, actions = clip()
    assert model.logits(tokens, actions).shape == (B, T, 4, 4, TINY.num_codes)
    loss, metrics = model.loss({"tokens": tokens, "actions": actions})
    assert loss.dim() == 0 and abs(loss.item() - math.log(TINY.num_codes)) < 0.5
    assert set(metrics) == {"losses/dynamics_ce", "charts/masked_accuracy"}
    assert 0 <= metrics["charts/masked_accuracy"] <= 1


def test_loss_is_a_mean_over_clips() -> None:
    # with every token of frames >= 1 hidden, the masks are fixed and the loss is deterministic
    model = make(dataclasses.replace(TINY, mask_ratio_min=1.0))
    tokens, actions = clip()
    both = model.loss({"tokens": tokens, "actions": actions})[0]
    each = [model.loss({"tokens": tokens[i:i + 1], "actions": actions[i:i + 1]})[0] for i in range(B)]
    torch.testing.assert_close(both, torch.stack(each).mean())


def future_leak(model: GenieDynamics, t: int) -> float:
    """Largest change in the logits of frames <= t when the tokens of frames > t change."""
    tokens, actions = clip()
    other = tokens.clone()
    other[:, t + 1:] = (tokens[:, t + 1:] + 1) % TINY.num_codes
    return (model.logits(tokens, actions)[:, :t + 1] - model.logits(other, actions)[:, :t + 1]).abs().max().item()


@pytest.mark.parametrize("config", [TINY, PATCHED], ids=["patch1", "patch2"])
@pytest.mark.parametrize("t", [0, 1, 2])
def test_future_frames_do_not_change_earlier_logits(t: int, config: DynamicsConfig) -> None:
    assert future_leak(make(config), t) == 0


def test_without_causal_mask_the_future_leaks() -> None:
    model = make()
    for block in model.transformer.blocks:
        block.causal = False  # the bug this test guards against
    assert future_leak(model, 1) > 1e-4


@pytest.mark.parametrize("config", [TINY, PATCHED], ids=["patch1", "patch2"])
@pytest.mark.parametrize("t", [0, 1, 2])
def test_action_t_conditions_frame_t_plus_1_only(t: int, config: DynamicsConfig) -> None:
    model = make(config)
    tokens, actions = clip()
    other = actions.clone()
    other[:, t] = (actions[:, t] + 1) % TINY.num_actions
    change = (model.logits(tokens, actions) - model.logits(tokens, other)).flatten(2).abs().amax(dim=(0, 2))  # (T,)
    assert torch.all(change[:t + 1] == 0), "a_t changed frames <= t"
    assert change[t + 1] > 1e-4, "a_t did not change frame t+1"


def test_last_action_of_a_clip_is_unused() -> None:
    model = make()
    tokens, actions = clip()
    other = actions.clone()
    other[:, -1] = (actions[:, -1] + 1) % TINY.num_actions
    assert torch.equal(model.logits(tokens, actions), model.logits(tokens, other))


@pytest.mark.parametrize("config", [TINY, PATCHED], ids=["patch1", "patch2"])
def test_cached_generation_equals_full_forward(config: DynamicsConfig) -> None:
    model = make(config)
    tokens, actions = clip()
    cache = model.prefill(tokens[:, :2], actions[:, :1])
    generated = []
    for t in (2, 3):
        generated.append(model.generate_next(cache, actions[:, t - 1], steps=1, temperature=0))
        # one step at temperature 0 is the argmax of the full model's logits with frame t hidden
        context = torch.cat([tokens[:, :2], *[g[:, None] for g in generated[:-1]],
                             torch.full((B, 1, 4, 4), model.mask_id)], dim=1)
        assert torch.equal(generated[-1], model.logits(context, actions[:, :t + 1])[:, t].argmax(-1))
    assert cache.length == 4


COPY = dataclasses.replace(PATCHED, copy_path=True)


def previous_of(tokens: torch.Tensor) -> torch.Tensor:
    """Each frame's previous frame's tokens (frame 0's own for frame 0)."""
    return torch.cat([tokens[:, :1], tokens[:, :-1]], dim=1)


@pytest.mark.parametrize("t", [0, 1, 2])
def test_copy_path_keeps_the_future_out(t: int) -> None:
    model = make(COPY)
    tokens, actions = clip()
    other = tokens.clone()
    other[:, t + 1:] = (tokens[:, t + 1:] + 1) % TINY.num_codes
    before = model.logits(tokens, actions, previous_of(tokens))[:, :t + 1]
    assert torch.equal(before, model.logits(other, actions, previous_of(other))[:, :t + 1])


def test_copy_path_gives_the_keep_probability_to_the_previous_code() -> None:
    model = make(COPY)
    tokens, actions = clip()
    logits = model.logits(tokens, actions, previous_of(tokens))  # (B, T, h, w, V): log-probabilities
    torch.testing.assert_close(logits.logsumexp(-1), torch.zeros(logits.shape[:-1]))
    with torch.no_grad():  # make "keep" (the last output of every token) near certain
        model.head.bias.view(4, TINY.num_codes + 1)[:, -1] = 30.0
    kept = model.logits(tokens, actions, previous_of(tokens)).argmax(-1)
    assert torch.equal(kept, previous_of(tokens))
    with pytest.raises(ValueError, match="previous frame"):
        model.logits(tokens, actions)


def test_copy_path_loss_keeps_codes_from_a_given_previous_grid() -> None:
    model = make(COPY)
    tokens, actions = clip()
    target = tokens.clone()  # "keep" points at the answer itself: e.g. a motion-compensated previous frame
    seen = []
    real_logits = model.logits
    model.logits = lambda x, a, *rest: seen.append(x) or real_logits(x, a, *rest)
    torch.manual_seed(0)
    loss = model.loss({"tokens": tokens, "actions": actions, "previous": target})[0]
    hidden = seen[-1] == model.mask_id  # (B, T, h, w)
    ce = torch.nn.functional.cross_entropy(real_logits(seen[-1], actions, target).movedim(-1, 1), tokens,
                                           reduction="none")  # (B, T, h, w)
    expected = torch.stack([ce[i][hidden[i]].mean() for i in range(B)]).mean()
    torch.testing.assert_close(loss, expected)
    with torch.no_grad():  # make "keep" near certain: keeping the answer costs nothing, keeping frame t-1 does
        model.head.bias.view(4, TINY.num_codes + 1)[:, -1] = 30.0
    torch.manual_seed(0)
    given = model.loss({"tokens": tokens, "actions": actions, "previous": target})[0]
    torch.manual_seed(0)
    default = model.loss({"tokens": tokens, "actions": actions})[0]
    assert given.item() < 1e-3 < 1.0 < default.item()
    with pytest.raises(ValueError, match="copy_path"):
        make().loss({"tokens": tokens, "actions": actions, "previous": target})


def test_cached_generation_with_a_copy_path_equals_full_forward() -> None:
    model = make(COPY)
    tokens, actions = clip()
    cache = model.prefill(tokens[:, :2], actions[:, :1])
    frames = [tokens[:, 0], tokens[:, 1]]
    for t in (2, 3):
        frames.append(model.generate_next(cache, actions[:, t - 1], steps=1, temperature=0, previous=frames[-1]))
        context = torch.stack([*frames[:-1], torch.full((B, 4, 4), model.mask_id)], dim=1)
        previous = torch.stack([frames[0], *frames[:-1]], dim=1)
        assert torch.equal(frames[-1], model.logits(context, actions[:, :t + 1], previous)[:, t].argmax(-1))


def test_a_keep_bias_moves_sampling_towards_the_previous_frame() -> None:
    model = make(COPY)
    tokens, actions = clip()
    other = (tokens[:, 1] + 1) % TINY.num_codes  # a "previous" grid the model has no reason to keep

    def generate(keep_bias: float) -> torch.Tensor:
        cache = model.prefill(tokens[:, :2], actions[:, :1])
        return model.generate_next(cache, actions[:, 1], steps=1, temperature=0, previous=other, keep_bias=keep_bias)

    with torch.no_grad():  # make "keep" (the last output of every token) unlikely
        model.head.bias.view(4, TINY.num_codes + 1)[:, -1] = -30.0
    assert not torch.equal(generate(0.0), other)
    assert torch.equal(generate(100.0), other)  # the bias outweighs the trained dislike of keeping
    with pytest.raises(ValueError, match="no copy_path"):
        make().generate_next(make().prefill(tokens[:, :1]), actions[:, 0], steps=1, temperature=0, keep_bias=1.0)


def test_token_groups_round_trip_and_keep_their_places() -> None:
    model = make(PATCHED)
    tokens, _ = clip()
    groups = model._group(tokens)  # (B, T, P, 4)
    assert groups.shape == (B, T, 4, 4)
    assert torch.equal(groups[0, 0, 0], tokens[0, 0, :2, :2].flatten())  # position 0 = the top-left 2x2 tokens
    assert torch.equal(model._ungroup(groups.float())[..., 0].long(), tokens)  # V = 1: values pass through
    swapped = tokens.clone()
    swapped[:, :, 0, 0], swapped[:, :, 0, 1] = tokens[:, :, 0, 1], tokens[:, :, 0, 0]
    differ = tokens[:, :, 0, 0] != tokens[:, :, 0, 1]
    embedded, embedded_swapped = model._embed_tokens(tokens), model._embed_tokens(swapped)
    assert differ.any() and torch.all((embedded - embedded_swapped)[..., 0, :].abs().amax(-1)[differ] > 0)


def test_sampling_is_deterministic_under_a_seed() -> None:
    model = make()
    tokens, actions = clip()

    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        cache = model.prefill(tokens[:, :1])
        return torch.stack([model.generate_next(cache, actions[:, t], steps=4, temperature=1.0) for t in range(3)], 1)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))


def test_generation_needs_a_prompt_and_room_in_the_cache() -> None:
    model = make()
    tokens, actions = clip()
    with pytest.raises(ValueError, match="prefill"):
        model.generate_next(KVCache(), actions[:, 0])
    cache = model.prefill(torch.cat([tokens, tokens[:, :2]], dim=1), torch.cat([actions, actions[:, :1]], dim=1))
    with pytest.raises(ValueError, match="max_frames"):
        model.generate_next(cache, actions[:, 0])


def test_bad_config_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="heads"):
        DynamicsConfig(dim=30, heads=4)
    with pytest.raises(UserInputError, match="mask ratios"):
        DynamicsConfig(mask_ratio_min=0.8, mask_ratio_max=0.5)
    with pytest.raises(UserInputError, match="clean_prefix_prob"):
        DynamicsConfig(clean_prefix_prob=1.5)
    shifts = ((0, 0), (0, 1), (-4, 0), (4, -1))
    with pytest.raises(UserInputError, match="action_shifts needs copy_path"):
        dataclasses.replace(TINY, action_shifts=shifts)
    with pytest.raises(UserInputError, match="one \\(dy, dx\\) per action"):
        dataclasses.replace(TINY, copy_path=True, action_shifts=shifts[:3])


def test_action_shifts_survive_a_json_round_trip() -> None:
    config = dataclasses.replace(TINY, copy_path=True, action_shifts=[[0, 0], [0, 1], [-4, 0], [4, -1]])
    assert config.action_shifts == ((0, 0), (0, 1), (-4, 0), (4, -1))
    back = config_from_dict(DynamicsConfig, json.loads(json.dumps(dataclasses.asdict(config))))
    assert back == config
    assert back.shift_table().tolist() == [[0, 0], [0, 1], [-4, 0], [4, -1]]
    assert TINY.shift_table() is None


def test_tiny_model_overfits_one_clip() -> None:
    model = make().train()
    tokens, actions = clip()
    batch = {"tokens": tokens, "actions": actions}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(150):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    start, end = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert end < 0.2 * start, (start, end)


def test_save_and_load_through_the_registry(tmp_path) -> None:
    from nextworld.models.base import load_pretrained, save_pretrained

    torch.manual_seed(0)
    model = make().eval()
    save_pretrained(model, tmp_path, "genie-dynamics")
    loaded = load_pretrained(tmp_path, family="genie-dynamics").eval()
    tokens = torch.randint(0, TINY.num_codes, (2, 3, *TINY.token_grid))
    actions = torch.randint(0, TINY.num_actions, (2, 3))
    assert loaded.config == model.config
    assert torch.equal(loaded.logits(tokens, actions), model.logits(tokens, actions))
