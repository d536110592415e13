"""MaskGIT (Chang et al. 2022): masked-token training and iterative parallel decoding.

Training hides a random subset of tokens and asks the model to predict them; decoding
starts from all tokens hidden and, over ``steps`` iterations, predicts every hidden token,
keeps the most confident predictions and hides the rest again. How many stay hidden after
iteration i (of ``steps``) follows the cosine schedule::

    hidden after iteration i = floor(N * gamma((i + 1) / steps)),  gamma(r) = cos(pi/2 * r)

so few tokens are committed early (when the model knows least) and many late; gamma(1) = 0,
so the last iteration commits everything. Randomness comes from torch's global generator
(training, reproducible under ``torch.manual_seed``) or, in ``decode``, from a given
``torch.Generator`` (a world that seeds its own sampling without touching the global one).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def cosine_schedule(r: torch.Tensor | float) -> torch.Tensor:
    """gamma(r) = cos(pi/2 * r), float64: the fraction of tokens still hidden at progress r in [0, 1]."""
    return torch.cos(math.pi / 2 * torch.as_tensor(r, dtype=torch.float64))


def sample_mask(shape: tuple[int, ...], min_ratio: float = 0.5, max_ratio: float = 1.0,
                device: torch.device | str | None = None) -> torch.Tensor:
    """A random training mask: each row hides a ratio r ~ U[min_ratio, max_ratio] of its tokens.

    Args:
        shape: (..., N); every row of N tokens draws its own ratio and hides exactly
            ceil(r * N) tokens, chosen uniformly.
        min_ratio, max_ratio: range of the hidden ratio, 0 <= min_ratio <= max_ratio <= 1.
    Returns:
        bool [..., N], True where a token is hidden.
    """
    if not 0 <= min_ratio <= max_ratio <= 1:
        raise ValueError(f"mask ratio range must satisfy 0 <= min <= max <= 1, got [{min_ratio}, {max_ratio}]")
    n = shape[-1]
    ratio = min_ratio + (max_ratio - min_ratio) * torch.rand(shape[:-1], device=device)  # (...)
    count = torch.ceil(ratio * n)  # (...)
    rank = torch.rand(shape, device=device).argsort(dim=-1).argsort(dim=-1)  # (..., N), a random permutation of 0..N-1
    return rank < count.unsqueeze(-1)


def decode(predict: Callable[[torch.Tensor], torch.Tensor], batch: int, num_tokens: int, mask_id: int,
           steps: int = 8, temperature: float = 1.0, device: torch.device | str | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Iterative MaskGIT decoding of ``num_tokens`` tokens per sequence, from all hidden.

    At each of ``steps`` iterations:
    1. ``predict`` the logits of every token from the current (partly hidden) tokens;
    2. sample a token at every hidden position (argmax when ``temperature`` is 0, otherwise from
       softmax(logits / temperature)); its probability is its confidence;
    3. keep the tokens already committed, commit the most confident new ones, and hide the rest
       again so that floor(N * cos(pi/2 * (i + 1) / steps)) stay hidden (at least one token is
       committed per iteration, all of them at the last).

    Args:
        predict: tokens int64 [B, N] (``mask_id`` where hidden) -> logits float [B, N, V].
        batch, num_tokens: B and N.
        mask_id: the id of the hidden token (outside the V predicted ids).
        steps: iterations, >= 1.
        temperature: sampling temperature, >= 0.
        generator: draws the samples (torch's global generator when None).
    Returns:
        int64 [B, N], every token committed.
    """
    if steps < 1:
        raise ValueError(f"MaskGIT decoding needs steps >= 1, got {steps}")
    if temperature < 0:
        raise ValueError(f"MaskGIT sampling temperature must be >= 0, got {temperature}")
    tokens = torch.full((batch, num_tokens), mask_id, dtype=torch.long, device=device)
    hidden = num_tokens
    for i in range(steps):
        logits = predict(tokens).float()  # (B, N, V)
        if temperature == 0:
            sampled = logits.argmax(dim=-1)  # (B, N)
        else:
            probs = torch.softmax(logits / temperature, dim=-1).flatten(0, 1)  # (B*N, V)
            sampled = torch.multinomial(probs, 1, generator=generator).view(batch, num_tokens)  # (B, N)
        confidence = torch.softmax(logits, dim=-1).gather(-1, sampled.unsqueeze(-1)).squeeze(-1)  # (B, N)
        is_hidden = tokens == mask_id  # (B, N)
        # committed tokens stay committed: give them infinite confidence so they are never hidden again
        confidence = torch.where(is_hidden, confidence, torch.inf)
        tokens = torch.where(is_hidden, sampled, tokens)
        hidden = max(0, min(int(num_tokens * cosine_schedule((i + 1) / steps)), hidden - 1))  # 0 at i = steps-1
        if hidden == 0:
            break
        least_confident = confidence.topk(hidden, dim=-1, largest=False).indices  # (B, hidden)
        tokens = tokens.scatter(-1, least_confident, mask_id)
    return tokens
