"""Genie's video tokenizer (stage 1 of Bruce et al. 2024): frames <-> grids of discrete tokens.

A frame-wise convolutional VQ-VAE: each frame [C, H, W] is encoded by stride-2 convolutions
to a [h, w] grid (h = H / downsample) of latents, each latent is quantized to one of
``num_codes`` codes (VQ or FSQ), and a mirrored decoder maps the code grid back to pixels.
The dynamics model of Genie predicts these tokens; the latent action model sees pixels.

Trained with ``loss(batch)``: pixel MSE plus the quantizer's own loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nextworld.data.frames import to_model_frames
from nextworld.errors import UserInputError
from nextworld.eval.metrics import psnr
from nextworld.nn.conv_blocks import ConvDecoder, ConvEncoder
from nextworld.nn.quantizers import FSQ, QuantizerOutput, VectorQuantizer


@dataclass
class TokenizerConfig:
    """Shape and training knobs of a ``VideoTokenizer``."""

    image_size: int = 64
    """Height and width of the (square) frames, in pixels."""
    channels: int = 3
    """Colour channels of the frames."""
    downsample: int = 8
    """Frame pixels per token along each side, a power of two >= 2: 64x64 frames with 8
    give 8x8 tokens."""
    width: int = 64
    """Channels at token resolution; each higher-resolution stage has half the channels
    of the one below it (64 with downsample 8: 16, 32, 64)."""
    num_res_blocks: int = 2
    """Residual blocks at token resolution, in the encoder and again in the decoder."""
    quantizer: str = "vq"
    """'vq' (learned codebook with dead-code restarts) or 'fsq' (finite scalar
    quantization, no codebook)."""
    codebook_size: int = 1024
    """Codes in the VQ codebook (ignored by FSQ, whose code count is the product of fsq_levels)."""
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    """Levels per dimension for FSQ: (8, 5, 5, 5) gives 1000 codes of 4 dimensions."""
    code_dim: int = 32
    """Dimension of VQ codes (FSQ codes have len(fsq_levels) dimensions)."""
    commitment_beta: float = 0.25
    """Weight of the VQ commitment loss, which pulls encoder outputs towards their codes."""
    restart_threshold: float = 0.03
    """A VQ code is re-initialised from the batch when its moving-average share of
    assignments falls below this fraction of a uniform share."""
    usage_decay: float = 0.9
    """Decay of the moving average of VQ code usage: a code that stops being used is
    restarted after about log(restart_threshold) / log(usage_decay) steps (33 with the
    defaults; with 0.99, i.e. 350 steps, tiny runs on CoinRun collapsed to ~2% of the codes)."""
    loss_frames: int = 4
    """Frames per clip that the training loss reconstructs, drawn at random each step (0: all).
    The tokenizer is frame-wise and neighbouring frames are near-duplicates, so a few per
    clip give nearly the same signal for a fraction of the compute."""

    def __post_init__(self) -> None:
        stages = self.downsample.bit_length() - 1
        if self.downsample < 2 or 2 ** stages != self.downsample:
            raise UserInputError(f"tokenizer downsample must be a power of two >= 2, got {self.downsample}")
        if self.image_size % self.downsample:
            raise UserInputError(
                f"tokenizer image_size {self.image_size} is not divisible by downsample {self.downsample}")
        if self.width < 2 ** (stages - 1):
            raise UserInputError(f"tokenizer width {self.width} is too small to halve over {stages} stages")
        if self.quantizer not in ("vq", "fsq"):
            raise UserInputError(f"tokenizer quantizer must be 'vq' or 'fsq', got {self.quantizer!r}")
        if self.quantizer == "fsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise UserInputError(f"tokenizer fsq_levels need >= 2 levels per dimension, got {list(self.fsq_levels)}")

    @property
    def stage_widths(self) -> list[int]:
        """Channels of each stride-2 stage, highest resolution first: width 64, downsample 8 -> [16, 32, 64]."""
        stages = self.downsample.bit_length() - 1
        return [self.width >> (stages - 1 - i) for i in range(stages)]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the frames this tokenizer takes, as stored in datasets."""
        return self.image_size, self.image_size, self.channels

    @property
    def token_grid(self) -> tuple[int, int]:
        """(h, w): tokens per frame along each side."""
        return self.image_size // self.downsample, self.image_size // self.downsample


class VideoTokenizer(nn.Module):
    """Frames float [B, T, C, H, W] in [0, 1] <-> tokens int64 [B, T, h, w], frame by frame."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.stage_widths
        if config.quantizer == "vq":
            self.quantizer: VectorQuantizer | FSQ = VectorQuantizer(
                config.codebook_size, config.code_dim, config.commitment_beta,
                config.restart_threshold, config.usage_decay)
        else:
            self.quantizer = FSQ(config.fsq_levels)
        self.encoder = ConvEncoder(config.channels, widths, config.num_res_blocks)
        self.to_code = nn.Conv2d(widths[-1], self.quantizer.code_dim, 1)
        self.from_code = nn.Conv2d(self.quantizer.code_dim, widths[-1], 1)
        self.decoder = ConvDecoder(config.channels, widths, config.num_res_blocks)

    @property
    def num_codes(self) -> int:
        """Size of the token vocabulary."""
        return self.quantizer.num_codes

    def _check_frames(self, frames: torch.Tensor) -> None:
        c, s = self.config.channels, self.config.image_size
        if frames.dim() != 5 or tuple(frames.shape[2:]) != (c, s, s):
            raise ValueError(f"tokenizer expects frames [B, T, {c}, {s}, {s}], got {list(frames.shape)}")

    def _quantize(self, frames: torch.Tensor) -> QuantizerOutput:
        """float [B, T, C, H, W] -> QuantizerOutput with z [B*T, h, w, D], indices [B*T, h, w]."""
        self._check_frames(frames)
        z = self.to_code(self.encoder(frames.flatten(0, 1)))  # (B*T, D, h, w)
        return self.quantizer(z.permute(0, 2, 3, 1))  # channel-last (B*T, h, w, D)

    def _decode_codes(self, z: torch.Tensor, batch: int) -> torch.Tensor:
        """float [B*T, h, w, D] -> raw (unclamped) frames float [B, T, C, H, W]."""
        x = self.decoder(self.from_code(z.permute(0, 3, 1, 2)))  # (B*T, C, H, W)
        return x.unflatten(0, (batch, -1))  # (B, T, C, H, W)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, C, H, W] in [0, 1] -> tokens int64 [B, T, h, w]. Never changes the codebook."""
        return self._quantize(frames).indices.unflatten(0, frames.shape[:2])  # (B, T, h, w)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """tokens int64 [B, T, h, w] -> frames float [B, T, C, H, W] in [0, 1]."""
        z = self.quantizer.indices_to_codes(indices.flatten(0, 1))  # (B*T, h, w, D)
        return self._decode_codes(z, indices.shape[0]).clamp(0, 1)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Encode, quantize and decode in one pass, with gradients.

        Args:
            frames: float [B, T, C, H, W] in [0, 1].
        Returns:
            raw reconstruction float [B, T, C, H, W] (unclamped) and the quantizer output
            (z [B*T, h, w, D], indices [B*T, h, w], loss, metrics).
        """
        q = self._quantize(frames)
        return self._decode_codes(q.z, frames.shape[0]), q

    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, C, H, W] in [0, 1] -> its reconstruction through the tokens, in [0, 1]."""
        return self(frames)[0].clamp(0, 1)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reconstruction + quantizer loss on a batch of clips.

        Args:
            batch: ``frames`` uint8 [B, T, H, W, C].
        Returns:
            scalar loss and metrics ``losses/recon``, ``losses/quantizer``, ``charts/psnr``
            (mean per-frame PSNR of the clamped reconstruction), ``charts/codebook_usage``,
            ``charts/perplexity`` (0-d tensors).
        """
        frames = batch["frames"]
        k = self.config.loss_frames
        if 0 < k < frames.shape[1]:
            # k distinct frames per clip, from a fresh random permutation each step
            pick = torch.rand(frames.shape[:2], device=frames.device).argsort(dim=1)[:, :k]  # (B, k)
            frames = frames[torch.arange(frames.shape[0], device=frames.device)[:, None], pick]  # (B, k, H, W, C)
        x = to_model_frames(frames)  # (B, T, C, H, W)
        recon, q = self(x)
        recon_loss = F.mse_loss(recon, x)
        metrics = {
            "losses/recon": recon_loss.detach(),
            "losses/quantizer": q.loss.detach(),
            "charts/psnr": psnr(recon.detach().clamp(0, 1), x).mean(),
            "charts/codebook_usage": q.metrics["codebook_usage"],
            "charts/perplexity": q.metrics["perplexity"],
        }
        return recon_loss + q.loss, metrics
