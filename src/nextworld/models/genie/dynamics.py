"""Genie's dynamics model (stage 3 of Bruce et al. 2024): next-frame tokens from past tokens and a latent action.

A MaskGIT space-time transformer over the tokenizer's frame tokens. Frame t's tokens are
embedded (a hidden token gets the extra id ``num_codes``, [MASK]) and the embedding of the
latent action that *leads to* frame t is added to each of them: action ``a_t`` is taken
after frame t (see ``nextworld``'s tensor conventions), so it conditions frame t+1, and
frame 0 gets none. Causal temporal attention lets frame t see frames <= t only, so the
logits of frame t+1 depend on frames 0..t+1 and actions 0..t.

Training (``loss``): frame 0 is never hidden; every later frame hides a ratio ~ U[0.5, 1]
of its tokens (``mask_ratio_min``/``max``); cross-entropy on the hidden tokens only. With
``clean_prefix_prob`` > 0, that share of clips also leaves a random prefix of frames whole.

Generation: ``prefill`` caches a prompt's temporal keys/values, then each ``generate_next``
decodes one frame by MaskGIT iterations over that frame's own tokens and appends it to the
cache, so a new frame costs ``steps + 1`` passes over one frame's positions, not over the clip.

Keeping codes (``copy_path``, off by default): the head predicts one more logit per token,
"keep", whose probability is added to the code that the previous frame has at that place, so
the logits become log-probabilities and ``logits``/``generate_next`` take the previous frame's
tokens (``previous``). ``loss`` keeps the previous frame's own tokens unless the batch gives
``previous``, another grid to keep codes from: with ``action_shifts`` (motion compensation), the
previous frame moved by the camera shift its action names.

Token groups (``token_patch`` p > 1): each transformer position holds a p x p group of
tokens; its embedding is the sum of per-place token embeddings (one table per place in the
group, so swapping two tokens changes it), and the head predicts all p*p tokens of the group.
Masking and MaskGIT decoding still act on single tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nextworld.errors import UserInputError
from nextworld.nn import maskgit
from nextworld.nn.space_time import KVCache, SpaceTimeTransformer


@dataclass
class DynamicsConfig:
    """Shape and training knobs of ``GenieDynamics``."""

    num_codes: int = 1024
    """Token vocabulary, the tokenizer's ``num_codes``; id ``num_codes`` is the [MASK] token."""
    token_grid: tuple[int, int] = (8, 8)
    """(h, w): tokens per frame along each side, the tokenizer's ``token_grid``."""
    num_actions: int = 8
    """Latent actions, the latent action model's codebook size."""
    dim: int = 256
    """Transformer width."""
    depth: int = 6
    """Space-time blocks."""
    heads: int = 8
    """Attention heads (``dim`` must be divisible by them)."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of ``dim``."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches."""
    mask_ratio_min: float = 0.5
    """Least ratio of a frame's tokens hidden in training (Genie: 0.5)."""
    mask_ratio_max: float = 1.0
    """Largest ratio of a frame's tokens hidden in training (Genie: 1.0)."""
    clean_prefix_prob: float = 0.0
    """Share of training clips that keep a random prefix of frames unhidden: such a clip draws a
    cut c uniformly in [1, T-1] and hides tokens of frames >= c only (a cut of 1 is Genie's own
    case), so the model also learns from the fully visible past it conditions on when it
    generates (Genie: 0, every frame but the first is partly hidden)."""
    copy_path: bool = False
    """Give every token a direct way to keep the previous frame's code at its place: the head
    predicts one extra logit per token, "keep", whose probability is added to that code's."""
    action_shifts: tuple[tuple[int, int], ...] | None = None
    """Motion compensation (needs ``copy_path``): the camera shift (dy, dx) that each latent
    action names: for a LAM trained with ``motion_weight``, the training recipe measures it as the
    most common camera shift of the training transitions the action labels
    (``latent_actions.modal_action_shifts``).
    The "keep" path of frame t+1 then points at frame t moved by a_t's shift in pixels and
    tokenized again (``VideoTokenizer.encode_moved``), so a scrolling view is kept, not
    re-predicted code by code. The dynamics only reads the grid: the world and the training
    inputs build it, as moving a frame takes the tokenizer."""
    max_frames: int = 16
    """Most frames the model attends over: training clip length and generation context."""
    token_patch: int = 1
    """Tokens per transformer position along each side: with 2, each position reads and
    predicts a 2x2 group of tokens, so a 16x16 token grid costs the transformer what an
    8x8 one does (the tokenizer keeps its finer grid and its quality)."""

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise UserInputError(f"dynamics dim {self.dim} is not divisible by heads {self.heads}")
        if not 0 <= self.clean_prefix_prob <= 1:
            raise UserInputError(f"dynamics clean_prefix_prob must lie in [0, 1], got {self.clean_prefix_prob}")
        if not 0 < self.mask_ratio_min <= self.mask_ratio_max <= 1:
            raise UserInputError(f"dynamics mask ratios must satisfy 0 < min <= max <= 1, "
                                 f"got [{self.mask_ratio_min}, {self.mask_ratio_max}]")
        if min(self.num_codes, self.num_actions, self.max_frames, self.token_patch, *self.token_grid) < 1:
            raise UserInputError("dynamics num_codes, num_actions, max_frames, token_patch and token_grid "
                                 "must be positive")
        if self.action_shifts is not None:
            shifts = tuple(tuple(int(v) for v in pair) for pair in self.action_shifts)
            if not self.copy_path or len(shifts) != self.num_actions or any(len(pair) != 2 for pair in shifts):
                raise UserInputError(f"dynamics action_shifts needs copy_path and one (dy, dx) per action "
                                     f"({self.num_actions}), got {self.action_shifts!r}")
            self.action_shifts = shifts
        if any(side % self.token_patch for side in self.token_grid):
            raise UserInputError(f"dynamics token_grid {tuple(self.token_grid)} is not divisible by "
                                 f"token_patch {self.token_patch}")

    def shift_table(self, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """int64 [num_actions, 2], ``action_shifts`` as a tensor (None without motion compensation)."""
        return None if self.action_shifts is None else torch.tensor(self.action_shifts, device=device)

    @property
    def tokens_per_frame(self) -> int:
        return self.token_grid[0] * self.token_grid[1]

    @property
    def positions_per_frame(self) -> int:
        """Transformer positions per frame: one per token_patch x token_patch group of tokens."""
        return self.tokens_per_frame // self.token_patch**2


class GenieDynamics(nn.Module):
    """tokens int64 [B, T, h, w] + latent actions int64 [B, T] -> logits of every token [B, T, h, w, num_codes]."""

    def __init__(self, config: DynamicsConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_id = config.num_codes
        group = config.token_patch**2
        # one table per place in a group (+1 id: [MASK]); a position's embedding is the sum over its group
        self.token_embedding = nn.Embedding(group * (config.num_codes + 1), config.dim)
        self.action_embedding = nn.Embedding(config.num_actions, config.dim)
        self.transformer = SpaceTimeTransformer(config.dim, config.depth, config.heads, config.mlp_ratio,
                                                config.dropout, config.max_frames, config.positions_per_frame)
        self.head = nn.Linear(config.dim, group * (config.num_codes + int(config.copy_path)))
        for emb in (self.token_embedding, self.action_embedding):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def _check(self, tokens: torch.Tensor, actions: torch.Tensor, num_actions: int) -> None:
        h, w = self.config.token_grid
        if tokens.dim() != 4 or tuple(tokens.shape[2:]) != (h, w):
            raise ValueError(f"dynamics expects tokens [B, T, {h}, {w}], got {list(tokens.shape)}")
        if tuple(actions.shape) != (tokens.shape[0], num_actions):
            raise ValueError(f"dynamics expects actions [{tokens.shape[0]}, {num_actions}] "
                             f"for tokens {list(tokens.shape)}, got {list(actions.shape)}")

    def _group(self, tokens: torch.Tensor) -> torch.Tensor:
        """int64 [..., h, w] -> [..., P, g]: each position's token_patch x token_patch group (g of them)."""
        p, (h, w) = self.config.token_patch, self.config.token_grid
        x = tokens.unflatten(-2, (h // p, p)).unflatten(-1, (w // p, p))  # (..., h/p, p, w/p, p)
        return x.transpose(-3, -2).flatten(-4, -3).flatten(-2)  # (..., P, g)

    def _ungroup(self, x: torch.Tensor) -> torch.Tensor:
        """float [..., P, g * V] (the head's output) -> [..., h, w, V], inverting ``_group``."""
        p, (h, w) = self.config.token_patch, self.config.token_grid
        x = x.unflatten(-1, (p, p, -1)).unflatten(-4, (h // p, w // p))  # (..., h/p, w/p, p, p, V)
        return x.transpose(-4, -3).flatten(-5, -4).flatten(-3, -2)  # (..., h, w, V)

    def _keep_previous(self, x: torch.Tensor, previous: torch.Tensor | None, keep_bias: float = 0.0) -> torch.Tensor:
        """Head output [..., V(+1)] -> logits [..., V]; with ``copy_path``, the log-probabilities of
        the codes with the "keep" probability added to each token's ``previous`` code [...].
        ``keep_bias`` is added to the keep log-probability first (sampling only; 0 in training)."""
        if not self.config.copy_path:
            return x
        if previous is None:
            raise ValueError("a copy_path dynamics needs the previous frame's tokens")
        logp = x.float().log_softmax(dim=-1)
        codes, keep = logp[..., :-1], logp[..., -1:] + keep_bias
        index = previous[..., None]
        return codes.scatter(-1, index, torch.logaddexp(codes.gather(-1, index), keep))

    def _embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """int64 [..., h, w] -> float [..., P, D]: the sum of each group's per-place token embeddings."""
        groups = self._group(tokens)  # (..., P, g)
        place = torch.arange(groups.shape[-1], device=tokens.device) * (self.config.num_codes + 1)
        return self.token_embedding(groups + place).sum(dim=-2)  # (..., P, D)

    def _embed(self, tokens: torch.Tensor, leading_actions: torch.Tensor) -> torch.Tensor:
        """tokens int64 [B, T, h, w] + the actions that lead to frames 1..T-1 [B, T-1] -> float [B, T, P, D]."""
        x = self._embed_tokens(tokens)  # (B, T, P, D)
        a = self.action_embedding(leading_actions)[:, :, None]  # (B, T-1, 1, D)
        return torch.cat([x[:, :1], x[:, 1:] + a], dim=1)  # frame 0 has no action leading to it

    def logits(self, tokens: torch.Tensor, actions: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every token of a clip, each frame seeing only itself and earlier frames.

        Args:
            tokens: int64 [B, T, h, w], ids in [0, num_codes]; ``num_codes`` marks a hidden token.
            actions: int64 [B, T]; ``actions[:, t]`` is taken after frame t and conditions frame
                t+1; the last one is unused.
            previous: int64 [B, T, h, w], each frame's previous frame's tokens (needed with
                ``copy_path``; frame 0's entry is unused by the loss).
        Returns:
            float [B, T, h, w, num_codes].
        """
        self._check(tokens, actions, tokens.shape[1])
        x = self._embed(tokens, actions[:, :-1])  # (B, T, P, D)
        return self._keep_previous(self._ungroup(self.head(self.transformer(x))), previous)  # (B, T, h, w, V)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """MaskGIT loss on a batch of token clips.

        Args:
            batch: ``tokens`` int64 [B, T, h, w] (T >= 2) and ``actions`` int64 [B, T] (latent actions);
                with ``copy_path``, optionally ``previous`` int64 [B, T, h, w], the tokens each
                frame's "keep" points at (frame 0's entry unused; the previous frame's own tokens
                when absent). Without ``copy_path`` a ``previous`` is refused (ValueError).
        Returns:
            the mean over clips of each clip's cross-entropy on its hidden tokens, and metrics
            ``losses/dynamics_ce`` and ``charts/masked_accuracy`` (argmax accuracy on the hidden
            tokens, mean over clips), as 0-d tensors.
        """
        tokens, actions, previous = batch["tokens"], batch["actions"], batch.get("previous")
        b, t = tokens.shape[:2]
        if t < 2:
            raise ValueError(f"dynamics loss needs clips of at least 2 frames (frame 0 is never hidden), got {t}")
        if previous is not None and not self.config.copy_path:
            raise ValueError("a batch's previous tokens need a copy_path dynamics")
        if previous is not None and previous.shape != tokens.shape:
            raise ValueError(f"dynamics expects previous like tokens {list(tokens.shape)}, got {list(previous.shape)}")
        hidden = maskgit.sample_mask((b, t, self.config.tokens_per_frame), self.config.mask_ratio_min,
                                     self.config.mask_ratio_max, device=tokens.device)  # (B, T, S)
        hidden[:, 0] = False
        if self.config.clean_prefix_prob > 0:
            cut = torch.randint(1, t, (b,), device=tokens.device)  # first frame that may be hidden
            cut = torch.where(torch.rand(b, device=tokens.device) < self.config.clean_prefix_prob, cut, 1)
            hidden &= torch.arange(t, device=tokens.device)[None, :, None] >= cut[:, None, None]
        hidden = hidden.view(tokens.shape)  # (B, T, h, w)
        if self.config.copy_path and previous is None:
            previous = torch.cat([tokens[:, :1], tokens[:, :-1]], dim=1)
        logits = self.logits(torch.where(hidden, self.mask_id, tokens), actions, previous)  # (B, T, h, w, V)
        ce = F.cross_entropy(logits.flatten(0, 3), tokens.flatten(), reduction="none").view(tokens.shape)
        correct = (logits.detach().argmax(dim=-1) == tokens).float()  # (B, T, h, w)
        weight = hidden.float() / hidden.flatten(1).sum(dim=1).view(b, 1, 1, 1)  # each clip's hidden tokens sum to 1
        loss = (ce * weight).sum() / b
        metrics = {"losses/dynamics_ce": loss.detach(), "charts/masked_accuracy": (correct * weight).sum() / b}
        return loss, metrics

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> KVCache:
        """Cache a prompt of T frames for generation.

        Args:
            tokens: int64 [B, T, h, w], T < max_frames to leave room for generated frames.
            actions: int64 [B, T-1], the actions between the prompt's frames (None when T = 1).
        Returns:
            the cache to pass to ``generate_next``.
        """
        if actions is None:
            actions = tokens.new_zeros(tokens.shape[0], 0)
        self._check(tokens, actions, tokens.shape[1] - 1)
        cache = KVCache()
        self.transformer(self._embed(tokens, actions), cache=cache)
        return cache

    @torch.no_grad()
    def generate_next(self, cache: KVCache, action: torch.Tensor, steps: int = 8,
                      temperature: float = 1.0, generator: torch.Generator | None = None,
                      previous: torch.Tensor | None = None, keep_bias: float = 0.0) -> torch.Tensor:
        """Decode the frame that follows the cached frames under ``action``, and append it to the cache.

        Args:
            cache: from ``prefill`` (and earlier ``generate_next`` calls); holds L < max_frames frames.
            action: int64 [B], the latent action taken after the last cached frame.
            steps: MaskGIT iterations.
            temperature: sampling temperature (0: argmax).
            generator: draws the samples (torch's global generator when None).
            previous: int64 [B, h, w], the last cached frame's tokens (needed with ``copy_path``).
            keep_bias: added to the "keep" log-probability of a ``copy_path`` dynamics (ValueError
                without one): above 0 the new frame holds on to ``previous`` more than trained.
        Returns:
            tokens int64 [B, h, w] of the new frame.
        """
        if cache.length == 0:
            raise ValueError("generate_next needs a cache from prefill: the prompt frames come first")
        if keep_bias and not self.config.copy_path:
            raise ValueError(f"keep_bias {keep_bias}: this dynamics has no copy_path to bias")
        if cache.length >= self.config.max_frames:
            raise ValueError(f"the cache already holds max_frames={self.config.max_frames} frames; "
                             f"prefill again with the last frames to continue")
        b, s, grid = action.shape[0], self.config.tokens_per_frame, self.config.token_grid
        if action.dim() != 1 or b * self.config.positions_per_frame != cache.layers[0][0].shape[0]:
            raise ValueError(f"generate_next expects one action per cached sequence, got shape {list(action.shape)}")
        a = self.action_embedding(action)[:, None, None]  # (B, 1, 1, D)

        def run(frame: torch.Tensor, update_cache: bool) -> torch.Tensor:
            """Row-major tokens [B, S] -> transformer output [B, P, D] of that frame."""
            x = self._embed_tokens(frame.view(b, 1, *grid)) + a  # (B, 1, P, D)
            return self.transformer(x, cache=cache, update_cache=update_cache)[:, 0]  # (B, P, D)

        def predict(frame: torch.Tensor) -> torch.Tensor:
            raw = self._ungroup(self.head(run(frame, False)))  # (B, h, w, V(+1))
            return self._keep_previous(raw, previous, keep_bias).flatten(1, 2)  # (B, S, V), row-major

        frame = maskgit.decode(predict, b, s, self.mask_id, steps, temperature,
                               device=action.device, generator=generator)  # (B, S)
        run(frame, True)  # the committed frame's keys/values become context for the next one
        return frame.view(b, *self.config.token_grid)  # (B, h, w)
