"""A space-time transformer over video tokens (Genie's ST-transformer, Bruce et al. 2024).

Tokens are float ``[B, T, S, D]``: T frames of S tokens each (S = h * w, a frame's token
grid in row-major order). Each block is pre-norm and attends in two factored steps, which
costs O(T S^2 + S T^2) instead of O((T S)^2) for full attention:

1. spatial self-attention among the S tokens of each frame;
2. temporal self-attention among the T tokens at the same spatial position, causal when
   ``causal=True``: frame t attends to frames <= t only;
3. an MLP.

Positions are learned embeddings, one per spatial slot and one per frame index, added once
at the input. The token grid and the context length are fixed by the model's config, so the
one thing sinusoids would add, extrapolation to unseen lengths, is unusable here anyway
(temporal attention never saw more than ``max_frames`` frames); learned tables cost only
(S + max_frames) * D parameters and let the model learn the 2-D layout of the grid.

Incremental generation (causal only): ``forward(x, cache)`` takes the new frames
``[B, T_new, S, D]``, attends over the cached temporal keys/values of past frames, and,
with ``update_cache=True``, appends its own. Spatial attention needs nothing from the past,
so a new frame costs only its own S tokens. The cached path equals the full forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class KVCache:
    """Temporal keys and values of the frames seen so far, one (k, v) pair per block.

    Each k and v is float ``[B*S, heads, frames, head_dim]``.
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Frames held (0 for a fresh cache)."""
        return self.layers[0][0].shape[2] if self.layers else 0


class SelfAttention(nn.Module):
    """Multi-head self-attention over the middle axis of float [N, L, D] -> [N, L, D]."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, causal: bool = False,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend within each of the N sequences.

        Args:
            x: float [N, L, D].
            causal: position i attends to positions <= i (counting ``past`` positions first).
            past: keys and values [N, heads, P, head_dim] of P earlier positions to attend to.
        Returns:
            output float [N, L, D] and this call's keys and values [N, heads, P + L, head_dim].
        """
        n, length, dim = x.shape
        qkv = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads)  # (N, L, 3, nh, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (N, nh, L, hd)
        mask = None
        if past is not None:
            p = past[0].shape[2]
            k = torch.cat([past[0], k], dim=2)  # (N, nh, P+L, hd)
            v = torch.cat([past[1], v], dim=2)  # (N, nh, P+L, hd)
            if causal and length > 1:
                # is_causal aligns the triangle top-left; with P keys in front it must be shifted by P
                mask = torch.ones(length, p + length, dtype=torch.bool, device=x.device).tril(diagonal=p)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # (N, nh, L, hd)
        y = y.transpose(1, 2).reshape(n, length, dim)  # (N, L, D)
        return self.resid_dropout(self.proj(y)), (k, v)


class SpaceTimeBlock(nn.Module):
    """Spatial attention, temporal attention and an MLP, each pre-norm and residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.norm_space = nn.LayerNorm(dim)
        self.attn_space = SelfAttention(dim, heads, dropout)
        self.norm_time = nn.LayerNorm(dim)
        self.attn_time = SelfAttention(dim, heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """float [B, T, S, D] -> same, and the temporal keys/values [B*S, heads, P + T, head_dim]."""
        b, t, s, d = x.shape
        h, _ = self.attn_space(self.norm_space(x).view(b * t, s, d))  # (B*T, S, D)
        x = x + h.view(b, t, s, d)
        h = self.norm_time(x).transpose(1, 2).reshape(b * s, t, d)  # (B*S, T, D)
        h, kv = self.attn_time(h, causal=self.causal, past=past)  # (B*S, T, D)
        x = x + h.view(b, s, t, d).transpose(1, 2)  # (B, T, S, D)
        x = x + self.mlp(self.norm_mlp(x))
        return x, kv


class SpaceTimeTransformer(nn.Module):
    """Factored space-time transformer: float [B, T, S, D] -> [B, T, S, D] (final LayerNorm applied).

    Args:
        dim: token width D (divisible by ``heads``).
        depth: number of blocks.
        heads: attention heads, in both the spatial and the temporal attention.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        dropout: dropout on attention weights and on each residual branch.
        max_frames: the most frames in one sequence (size of the temporal position table).
        tokens_per_frame: S (size of the spatial position table).
        causal: temporal attention is causal (frame t sees frames <= t); required by the cache.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 max_frames: int = 16, tokens_per_frame: int = 64, causal: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"space-time transformer dim {dim} is not divisible by heads {heads}")
        self.max_frames = max_frames
        self.causal = causal
        self.pos_time = nn.Parameter(torch.zeros(max_frames, dim))
        self.pos_space = nn.Parameter(torch.zeros(tokens_per_frame, dim))
        self.blocks = nn.ModuleList(SpaceTimeBlock(dim, heads, mlp_ratio, dropout, causal) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim)
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_time, std=0.02)
        nn.init.normal_(self.pos_space, std=0.02)
        for name, p in self.named_parameters():
            # GPT-2: scale the projections that write into the residual stream by 1/sqrt(#writes)
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / (3 * depth) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, update_cache: bool = True) -> torch.Tensor:
        """Run the blocks over T frames, optionally continuing from cached earlier frames.

        Args:
            x: float [B, T, S, D], the frames at positions ``cache.length`` ... ``cache.length + T - 1``
                (0 ... T - 1 without a cache).
            cache: the temporal keys/values of earlier frames of the same sequences (causal only).
            update_cache: append these frames' keys/values to ``cache``; leave it unchanged when False
                (to query a frame several times, as MaskGIT decoding does, before committing it).
        Returns:
            float [B, T, S, D].
        """
        start = cache.length if cache is not None else 0
        t, s = x.shape[1], x.shape[2]
        if cache is not None and not self.causal:
            raise ValueError("a KV cache needs causal temporal attention; this transformer was built with causal=False")
        if start + t > self.max_frames:
            raise ValueError(f"frames {start}..{start + t - 1} exceed the transformer's max_frames {self.max_frames}")
        if s != self.pos_space.shape[0]:
            raise ValueError(f"expected {self.pos_space.shape[0]} tokens per frame, got {s}")
        x = x + self.pos_time[start:start + t, None] + self.pos_space  # (B, T, S, D)
        new_layers = []
        for i, block in enumerate(self.blocks):
            past = cache.layers[i] if cache is not None and cache.layers else None
            x, kv = block(x, past)
            new_layers.append(kv)
        if cache is not None and update_cache:
            cache.layers = new_layers
        return self.norm_out(x)
