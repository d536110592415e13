"""Space-time transformer: shapes, causal temporal attention, KV cache == full forward."""

from __future__ import annotations

import pytest
import torch

from nextworld.nn.space_time import KVCache, SpaceTimeTransformer

B, T, S, D = 2, 4, 16, 32


pytestmark = pytest.mark.usefixtures("one_thread")


def make(causal: bool = True) -> SpaceTimeTransformer:
    torch.manual_seed(0)
    return SpaceTimeTransformer(D, depth=2, heads=4, max_frames=6, tokens_per_frame=S, causal=causal).eval()


def test_shapes() -> None:
    x = torch.randn(B, T, S, D)
    assert make()(x).shape == (B, T, S, D)


def future_leak(model: SpaceTimeTransformer, t: int) -> float:
    """Largest change in the outputs of frames <= t when the inputs of frames > t change."""
    torch.manual_seed(1)
    x = torch.randn(B, T, S, D)
    y = x.clone()
    y[:, t + 1:] = torch.randn(B, T - t - 1, S, D)
    return (model(x)[:, :t + 1] - model(y)[:, :t + 1]).abs().max().item()


@pytest.mark.parametrize("t", [0, 1, 2])
def test_future_frames_do_not_change_earlier_outputs(t: int) -> None:
    assert future_leak(make(), t) == 0


def test_without_causal_mask_the_future_leaks() -> None:
    # the same check catches a missing causal mask
    assert future_leak(make(causal=False), 1) > 1e-3


def test_cache_frame_by_frame_equals_full_forward() -> None:
    model = make()
    x = torch.randn(B, T, S, D)
    full = model(x)
    cache = KVCache()
    steps = [model(x[:, t:t + 1], cache=cache) for t in range(T)]
    assert cache.length == T
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_cache_after_multi_frame_prefill_equals_full_forward() -> None:
    model = make()
    x = torch.randn(B, T, S, D)
    full = model(x)
    cache = KVCache()
    prefix = model(x[:, :1], cache=cache)
    middle = model(x[:, 1:3], cache=cache)  # two frames after a cached one: needs the shifted causal mask
    last = model(x[:, 3:], cache=cache)
    torch.testing.assert_close(torch.cat([prefix, middle, last], dim=1), full, rtol=1e-5, atol=1e-5)


def test_query_without_update_leaves_cache_unchanged() -> None:
    model = make()
    x = torch.randn(B, 2, S, D)
    cache = KVCache()
    model(x[:, :1], cache=cache)
    before = [k.clone() for k, _ in cache.layers]
    model(torch.randn(B, 1, S, D), cache=cache, update_cache=False)
    assert cache.length == 1
    assert all(torch.equal(k, b) for (k, _), b in zip(cache.layers, before))


def test_cache_limits() -> None:
    with pytest.raises(ValueError, match="causal"):
        make(causal=False)(torch.randn(B, 1, S, D), cache=KVCache())
    with pytest.raises(ValueError, match="max_frames"):
        make()(torch.randn(B, 7, S, D))
