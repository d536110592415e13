"""Self-supervised video JEPA (V-JEPA, Bardes et al. 2024): learn features of video by
predicting the features of masked space-time regions, never their pixels.

A clip float ``[B, T, C, H, W]`` is cut into tubelets of ``tubelet`` frames x ``patch`` x
``patch`` pixels, each embedded linearly into a token: a grid of ``T' x h x w`` tokens
(T' = T / tubelet, h = H / patch), flattened in (t, h, w) order to N tokens, each with a
fixed 3-D sine-cosine position (as V-JEPA; the grid is fixed by the config, and fixed
positions cost no parameters and need no learning on small data).

One training step (``loss``):

1. A multi-block tube mask (``masks.py``) splits the N tokens into context and targets.
2. The *context encoder* (a plain pre-norm transformer, trained) sees the context tokens only.
3. The *predictor*, a narrower transformer, sees the context features plus one learned mask
   token at every target position (with that position's embedding) and outputs a feature
   for each target.
4. The *target encoder*, an EMA copy of the context encoder (``nextworld.nn.ema``), sees all
   N tokens under no_grad; its features, layer-normed, are the targets.
5. Loss: L1 between predictions and targets at the masked positions (V-JEPA's choice; it
   is less sensitive than L2 to the few large target features). V-JEPA draws two masks per
   clip (short-range and long-range, ``mask_num_blocks``), runs steps 1-3 once for each, and
   averages the losses; the target encoder runs once.

After each optimizer step, ``after_optimizer_step`` moves the target encoder towards the
context encoder with a decay rising linearly from ``ema_start`` to ``ema_end``.

Nothing stops the two encoders from agreeing on a constant (collapse) except the EMA and
the predictor's narrowness; ``charts/target_std`` watches for it.

For use elsewhere (probes, other families), ``encode_tokens`` / ``encode_frames`` /
``encode`` give the TARGET encoder's features: V-JEPA and I-JEPA evaluate with it, since
the EMA smooths the context encoder's step-to-step noise, and it has seen whole clips in
training, which is what it will be given (the context encoder only ever saw masked ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nextworld.data.frames import to_model_frames
from nextworld.errors import UserInputError
from nextworld.models.base import register_family
from nextworld.models.jepa.masks import sample_masks
from nextworld.nn.ema import ema_decay, ema_update, make_target
from nextworld.nn.space_time import SelfAttention
from nextworld.nn.st_vivit import patchify


@dataclass
class VideoJEPAConfig:
    """Shape, masking and training knobs of a ``VideoJEPA``."""

    frame_shape: tuple[int, int, int] = (64, 64, 3)
    """(H, W, C) of the frames, as stored."""
    frames: int = 16
    """Most frames in a clip: the training clip length (shorter clips also work, in multiples of ``tubelet``)."""
    tubelet: int = 2
    """Frames per token along time (V-JEPA: 2); ``frames`` must be divisible by it."""
    patch: int = 8
    """Pixels per token side: 64x64 frames with 8 give 8x8 tokens per tubelet."""
    dim: int = 256
    """Width of the encoders: the size of the features they output."""
    depth: int = 6
    """Transformer blocks of the encoders."""
    heads: int = 8
    """Attention heads of the encoders (``dim`` must be divisible by them)."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of the width, in the encoders and the predictor."""
    predictor_dim: int = 128
    """Width of the predictor; narrower than the encoders, as in I-JEPA and V-JEPA, so it cannot
    carry a solution of its own through the mask tokens."""
    predictor_depth: int = 4
    """Transformer blocks of the predictor."""
    predictor_heads: int = 4
    """Attention heads of the predictor (``predictor_dim`` must be divisible by them)."""
    mask_num_blocks: tuple[int, ...] = (8, 2)
    """Blocks per mask, one entry per mask drawn for each clip; V-JEPA's short-range (8 blocks)
    and long-range (2 blocks) masks. The loss is the mean over the masks."""
    mask_block_scales: tuple[float, ...] = (0.15, 0.7)
    """Fraction of the spatial token grid each block covers, one entry per mask (V-JEPA: 0.15
    and 0.7, masking about 67 % and 85 % of an 8x8 grid)."""
    mask_aspect_ratio: tuple[float, float] = (0.75, 1.5)
    """(low, high) of a block's height / width, drawn uniformly."""
    ema_start: float = 0.996
    """EMA decay of the target encoder after the first optimizer step (I-JEPA's 0.996; V-JEPA's
    0.998 suits its much longer runs)."""
    ema_end: float = 1.0
    """EMA decay after the last optimizer step; the decay rises linearly in between."""
    loss: Literal["l1", "l2"] = "l1"
    """Distance between predicted and target features: ``l1`` (V-JEPA) or ``l2`` (mean squared, I-JEPA)."""

    def __post_init__(self) -> None:
        height, width, channels = self.frame_shape
        if min(height, width, channels, self.patch, self.tubelet, self.frames, self.depth, self.predictor_depth) < 1:
            raise UserInputError("video JEPA frame_shape, patch, tubelet, frames, depth and predictor_depth "
                                 "must be positive")
        if height % self.patch or width % self.patch:
            raise UserInputError(f"video JEPA frame_shape {self.frame_shape} is not divisible by patch {self.patch}")
        if (height // self.patch) * (width // self.patch) < 2:
            raise UserInputError(f"video JEPA needs at least 2 patches per frame to mask one; frame_shape "
                                 f"{self.frame_shape} with patch {self.patch} has 1")
        if self.frames % self.tubelet:
            raise UserInputError(f"video JEPA frames {self.frames} is not divisible by tubelet {self.tubelet}")
        for name, dim, heads in (("dim", self.dim, self.heads), ("predictor_dim", self.predictor_dim,
                                                                self.predictor_heads)):
            if dim % 8 or heads < 1 or dim % heads:
                raise UserInputError(f"video JEPA {name} {dim} must be a multiple of 8 (for the 3-D positions) "
                                     f"and of its heads {heads}")
        if not self.mask_num_blocks or len(self.mask_num_blocks) != len(self.mask_block_scales):
            raise UserInputError(f"video JEPA mask_num_blocks {self.mask_num_blocks} and mask_block_scales "
                                 f"{self.mask_block_scales} must be non-empty and of equal length")
        if min(self.mask_num_blocks) < 1 or not all(0 < s <= 1 for s in self.mask_block_scales):
            raise UserInputError("video JEPA mask_num_blocks must be >= 1 and mask_block_scales in (0, 1]")
        low, high = self.mask_aspect_ratio
        if not 0 < low <= high:
            raise UserInputError(f"video JEPA mask_aspect_ratio {self.mask_aspect_ratio} must satisfy 0 < low <= high")
        if not 0 <= self.ema_start <= self.ema_end <= 1:
            raise UserInputError(f"video JEPA needs 0 <= ema_start <= ema_end <= 1, got {self.ema_start}, "
                                 f"{self.ema_end}")
        if self.loss not in ("l1", "l2"):
            raise UserInputError(f"video JEPA loss must be 'l1' or 'l2', got {self.loss!r}")

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(T', h, w) of a clip of ``frames`` frames."""
        return self.frames // self.tubelet, self.frame_shape[0] // self.patch, self.frame_shape[1] // self.patch

    @property
    def tubelet_pixels(self) -> int:
        """Values in one tubelet: tubelet * C * patch * patch."""
        return self.tubelet * self.frame_shape[2] * self.patch * self.patch


VIDEO_JEPA_PRESETS: dict[str, VideoJEPAConfig] = {
    # 8 frames of 64x64 -> 4x8x8 = 256 tokens, 0.96M trained parameters (+0.84M EMA target); one
    # training step at batch 8 took 0.12 s on 2 idle CPU threads (0.14 s of CPU time on one)
    "tiny": VideoJEPAConfig(frames=8, dim=128, depth=4, heads=4, predictor_dim=64, predictor_depth=2,
                            predictor_heads=4),
    "small": VideoJEPAConfig(frames=16, dim=256, depth=6, heads=8, predictor_dim=128, predictor_depth=4,
                             predictor_heads=4),
    # V-JEPA's ViT-S shape (384 wide, 12 deep, 6 heads; predictor 192 x 6) over 16 frames of 64x64: 512 tokens
    "base": VideoJEPAConfig(frames=16, dim=384, depth=12, heads=6, predictor_dim=192, predictor_depth=6,
                            predictor_heads=6),
}
"""Named configs: ``tiny`` for 2 CPU cores, ``small`` and ``base`` for one GPU."""


# ---------------------------------------------------------------------------- pieces


def sincos_positions(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed 3-D sine-cosine positions (V-JEPA's layout): float [T' * h * w, dim], (t, h, w) row-major.

    Half of the dims encode t, a quarter each h and w; each part is [sin, cos] of the
    coordinate at geometrically spaced frequencies (``dim`` divisible by 8).
    """
    def one_axis(width: int, coords: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float64) / (width // 2))  # (width/2,)
        angles = coords.double()[:, None] * omega  # (N, width/2)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (N, width)

    t, h, w = torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")  # 3 x (T', h, w)
    quarter = dim // 4
    parts = [one_axis(dim - 2 * quarter, t.flatten()), one_axis(quarter, h.flatten()), one_axis(quarter, w.flatten())]
    return torch.cat(parts, dim=1).float()  # (N, dim)


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


class Block(nn.Module):
    """Pre-norm transformer block, full (non-causal) attention: float [B, L, D] -> [B, L, D]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout=0.0)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))[0]
        return x + self.mlp(self.norm_mlp(x))


class Transformer(nn.Module):
    """``depth`` pre-norm blocks and a final LayerNorm: float [B, L, dim] -> [B, L, dim]."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.apply(_init_linear)
        for name, p in self.named_parameters():
            # GPT-2: scale the projections that write into the residual stream by 1/sqrt(#writes)
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class VideoEncoder(nn.Module):
    """Tubelet embedding, 3-D positions and a transformer over any subset of a clip's tokens."""

    def __init__(self, config: VideoJEPAConfig) -> None:
        super().__init__()
        self.embed = nn.Linear(config.tubelet_pixels, config.dim)
        _init_linear(self.embed)
        self.register_buffer("positions", sincos_positions(config.dim, config.token_grid), persistent=False)
        self.transformer = Transformer(config.dim, config.depth, config.heads, config.mlp_ratio)

    def forward(self, tubelets: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode the kept tokens of a clip.

        Args:
            tubelets: float [B, N, tubelet_pixels], a clip's tubelets in (t, h, w) order
                (N at most the config's grid size; a shorter clip takes its first time steps).
            keep: int64 [B, K], the token indices to encode; all N when None.
        Returns:
            float [B, K, dim] (K = N when ``keep`` is None).
        """
        if keep is None:
            return self.transformer(self.embed(tubelets) + self.positions[:tubelets.shape[1]])  # (B, N, D)
        kept = tubelets.gather(1, keep[..., None].expand(-1, -1, tubelets.shape[-1]))  # (B, K, P)
        return self.transformer(self.embed(kept) + self.positions[keep])  # (B, K, D)


class Predictor(nn.Module):
    """Context features and target positions -> predicted target features, through a narrow transformer."""

    def __init__(self, config: VideoJEPAConfig) -> None:
        super().__init__()
        self.embed = nn.Linear(config.dim, config.predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(config.predictor_dim))
        self.register_buffer("positions", sincos_positions(config.predictor_dim, config.token_grid), persistent=False)
        self.transformer = Transformer(config.predictor_dim, config.predictor_depth, config.predictor_heads,
                                       config.mlp_ratio)
        self.head = nn.Linear(config.predictor_dim, config.dim)
        for layer in (self.embed, self.head):
            _init_linear(layer)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        """float [B, Nc, dim] at int64 positions [B, Nc]; targets at [B, Nt] -> float [B, Nt, dim]."""
        x = self.embed(context) + self.positions[context_idx]  # (B, Nc, Dp)
        queries = self.mask_token + self.positions[target_idx]  # (B, Nt, Dp)
        x = self.transformer(torch.cat([x, queries], dim=1))  # (B, Nc+Nt, Dp)
        return self.head(x[:, context.shape[1]:])  # (B, Nt, D)


# ---------------------------------------------------------------------------- the model


class VideoJEPA(nn.Module):
    """Context encoder, EMA target encoder and predictor; ``loss`` trains it, ``encode*`` read features."""

    def __init__(self, config: VideoJEPAConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = VideoEncoder(config)
        self.target_encoder = make_target(self.encoder)
        self.predictor = Predictor(config)

    @property
    def feature_dim(self) -> int:
        """D of the features that ``encode*`` return."""
        return self.config.dim

    def _tubelets(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, C, H, W] -> [B, T'*h*w, tubelet*C*p*p], tokens in (t, h, w) order."""
        height, width, channels = self.config.frame_shape
        limit = self.config.frames
        if frames.dim() != 5 or tuple(frames.shape[2:]) != (channels, height, width):
            raise ValueError(f"video JEPA expects frames [B, T, {channels}, {height}, {width}], "
                             f"got {list(frames.shape)}")
        b, t = frames.shape[:2]
        k = self.config.tubelet
        if t < k or t % k or t > limit:
            raise ValueError(f"video JEPA expects a multiple of tubelet {k} frames, at most {limit}, got {t}")
        x = patchify(frames, self.config.patch)  # (B, T, h, w, C*p*p)
        h, w, pixels = x.shape[2:]
        x = x.view(b, t // k, k, h, w, pixels).permute(0, 1, 3, 4, 2, 5)  # (B, T', h, w, k, C*p*p)
        return x.reshape(b, t // k * h * w, k * pixels)  # (B, N, P)

    # ------------------------------------------------------------------------ features

    def encode_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """The target encoder's feature of every token of a clip.

        Args:
            frames: float [B, T, C, H, W] in [0, 1]; T a multiple of ``tubelet``, at most ``frames``.
        Returns:
            float [B, T', h, w, D], T' = T / tubelet.
        """
        _, h, w = self.config.token_grid
        x = self.target_encoder(self._tubelets(frames))  # (B, N, D)
        return x.view(x.shape[0], -1, h, w, x.shape[-1])  # (B, T', h, w, D)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """One feature per tubelet time step: ``encode_tokens`` averaged over space.

        Args:
            frames: float [B, T, C, H, W] in [0, 1], as ``encode_tokens``.
        Returns:
            float [B, T', D]; entry t summarises frames t*tubelet .. (t+1)*tubelet - 1 (and,
            through attention, the whole clip).
        """
        return self.encode_tokens(frames).mean(dim=(2, 3))  # (B, T', D)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """One feature per clip: ``encode_tokens`` averaged over time and space, float [B, D]."""
        return self.encode_tokens(frames).mean(dim=(1, 2, 3))  # (B, D)

    # ------------------------------------------------------------------------ training

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Masked feature prediction on a batch of clips; reads ``frames`` only (actions may be absent).

        Args:
            batch: ``frames`` uint8 [B, T, H, W, C], T a multiple of ``tubelet``, at most ``frames``.
        Returns:
            scalar loss (mean over masks, clips, target tokens and dims; every clip of a batch
            has as many targets, so it is a mean over clips) and metrics:
            ``losses/jepa_l1`` (or ``jepa_l2``); ``charts/target_std``, the std over the batch's
            tokens of each normalised target dimension, averaged over dims (about 1 when
            features differ between tokens, 0 when collapsed to a constant);
            ``charts/context_fraction``, the share of tokens the context encoder saw (a float;
            the others are 0-d tensors).
        """
        c = self.config
        x = to_model_frames(batch["frames"])  # (B, T, C, H, W)
        tubelets = self._tubelets(x)  # (B, N, P)
        b, n = tubelets.shape[:2]
        with torch.no_grad():
            targets = self.target_encoder(tubelets)  # (B, N, D)
            targets = F.layer_norm(targets, (targets.shape[-1],))  # (B, N, D), stop-gradient
        grid = (n // (c.token_grid[1] * c.token_grid[2]),) + c.token_grid[1:]
        losses, context_fractions = [], []
        for num_blocks, scale in zip(c.mask_num_blocks, c.mask_block_scales):
            context_idx, target_idx = sample_masks(b, grid, num_blocks=num_blocks, block_scale=(scale, scale),
                                                   aspect_ratio=c.mask_aspect_ratio, device=x.device)
            context = self.encoder(tubelets, context_idx)  # (B, Nc, D)
            predicted = self.predictor(context, context_idx, target_idx)  # (B, Nt, D)
            wanted = targets.gather(1, target_idx[..., None].expand(-1, -1, targets.shape[-1]))  # (B, Nt, D)
            error = predicted - wanted
            losses.append(error.abs().mean() if c.loss == "l1" else error.square().mean())
            context_fractions.append(context_idx.shape[1] / n)
        loss = torch.stack(losses).mean()
        metrics = {
            f"losses/jepa_{c.loss}": loss.detach(),
            "charts/target_std": targets.flatten(0, 1).float().std(dim=0, unbiased=False).mean(),
            "charts/context_fraction": sum(context_fractions) / len(context_fractions),
        }
        return loss, metrics

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Move the target encoder towards the context encoder, with decay ``ema_decay(step, total_steps)``."""
        decay = ema_decay(step, total_steps, self.config.ema_start, self.config.ema_end)
        ema_update(self.target_encoder, self.encoder, decay)


register_family("jepa-video", VideoJEPAConfig, VideoJEPA)
