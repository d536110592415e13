"""Genie's video tokenizer (stage 1 of Bruce et al. 2024): frames <-> grids of discrete tokens.

A VQ-VAE: frames [C, H, W] are encoded to [h, w] grids (h = H / downsample) of latents, each
latent is quantized to one of ``num_codes`` codes (VQ or FSQ), and a decoder maps the code
grids back to pixels. Two encoder/decoder designs, chosen by ``TokenizerConfig.arch``:

- ``"conv"``: frame-wise stride-2 convolutions and a mirrored decoder (``nn.conv_blocks``);
  each frame's tokens depend on that frame alone.
- ``"st"``: Genie's ST-ViViT (``nn.st_vivit``): ``downsample`` x ``downsample`` patches, a
  space-time transformer with causal temporal attention, and another one to decode. Frame
  t's tokens (and its reconstruction) depend on the frames before it in its window of
  ``st_max_frames`` frames; encoding a single frame (T = 1) works and sees that frame alone.

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
from nextworld.data.camera import translate
from nextworld.eval.metrics import psnr
from nextworld.nn.conv_blocks import ConvDecoder, ConvEncoder
from nextworld.nn.quantizers import FSQ, QuantizerOutput, VectorQuantizer
from nextworld.nn.st_vivit import STViViTDecoder, STViViTEncoder


@dataclass
class TokenizerConfig:
    """Shape and training knobs of a ``VideoTokenizer``."""

    image_size: int = 64
    """Height and width of the (square) frames, in pixels."""
    channels: int = 3
    """Colour channels of the frames."""
    arch: str = "conv"
    """'conv' (frame-wise convolutional VQ-VAE) or 'st' (ST-ViViT: patches and space-time
    transformers with causal temporal attention); see the module docstring."""
    downsample: int = 8
    """Frame pixels per token along each side: 64x64 frames with 8 give 8x8 tokens. For
    'conv' a power of two >= 2 (one stride-2 stage per halving); for 'st' the patch size."""
    width: int = 64
    """'conv': channels at token resolution; each higher-resolution stage has half the channels
    of the one below it (64 with downsample 8: 16, 32, 64)."""
    num_res_blocks: int = 2
    """'conv': residual blocks at token resolution, in the encoder and again in the decoder."""
    st_dim: int = 64
    """'st': width of the encoder's and the decoder's transformers."""
    st_depth: int = 2
    """'st': space-time blocks in the encoder, and again in the decoder."""
    st_heads: int = 4
    """'st': attention heads (``st_dim`` must be divisible by them)."""
    st_max_frames: int = 16
    """'st': temporal window, in frames. Clips are cut into consecutive windows of this many
    frames, each tokenized on its own (frame t attends to the frames of its window up to t).
    Training reconstructs one window per clip, a contiguous run at a random start (the whole
    clip if shorter), so it sees what encoding sees: each frame with the earlier frames of its
    window as its past, never a gap in it."""
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
    """'conv': frames per clip that the training loss reconstructs, drawn at random each step
    (0: all). The conv tokenizer is frame-wise and neighbouring frames are near-duplicates, so
    a few per clip give nearly the same signal for a fraction of the compute. Not used by
    'st', whose frames need their past: it trains on runs of ``st_max_frames``."""

    def __post_init__(self) -> None:
        if self.arch not in ("conv", "st"):
            raise UserInputError(f"tokenizer arch must be 'conv' or 'st', got {self.arch!r}")
        if self.arch == "conv":
            stages = self.downsample.bit_length() - 1
            if self.downsample < 2 or 2 ** stages != self.downsample:
                raise UserInputError(f"tokenizer downsample must be a power of two >= 2, got {self.downsample}")
            if self.width < 2 ** (stages - 1):
                raise UserInputError(f"tokenizer width {self.width} is too small to halve over {stages} stages")
        else:
            if self.downsample < 1:
                raise UserInputError(f"tokenizer downsample (the patch size) must be >= 1, got {self.downsample}")
            if min(self.st_dim, self.st_depth, self.st_heads, self.st_max_frames) < 1:
                raise UserInputError("tokenizer st_dim, st_depth, st_heads and st_max_frames must be >= 1, got "
                                     f"{self.st_dim}, {self.st_depth}, {self.st_heads}, {self.st_max_frames}")
            if self.st_dim % self.st_heads:
                raise UserInputError(f"tokenizer st_dim {self.st_dim} is not divisible by st_heads {self.st_heads}")
        if self.image_size % self.downsample:
            raise UserInputError(
                f"tokenizer image_size {self.image_size} is not divisible by downsample {self.downsample}")
        if self.quantizer not in ("vq", "fsq"):
            raise UserInputError(f"tokenizer quantizer must be 'vq' or 'fsq', got {self.quantizer!r}")
        if self.quantizer == "fsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise UserInputError(f"tokenizer fsq_levels need >= 2 levels per dimension, got {list(self.fsq_levels)}")

    @property
    def stage_widths(self) -> list[int]:
        """'conv': channels of each stride-2 stage, highest resolution first: width 64, downsample 8 -> [16, 32, 64]."""
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
    """Frames float [B, T, C, H, W] in [0, 1] <-> tokens int64 [B, T, h, w].

    Frame by frame for ``arch="conv"``; causally within windows of ``st_max_frames`` for ``"st"``.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.quantizer == "vq":
            self.quantizer: VectorQuantizer | FSQ = VectorQuantizer(
                c.codebook_size, c.code_dim, c.commitment_beta, c.restart_threshold, c.usage_decay)
        else:
            self.quantizer = FSQ(c.fsq_levels)
        code_dim = self.quantizer.code_dim
        self.encoder: ConvEncoder | STViViTEncoder
        self.decoder: ConvDecoder | STViViTDecoder
        self.to_code: nn.Conv2d | nn.Linear
        self.from_code: nn.Conv2d | nn.Linear
        if c.arch == "conv":
            widths = c.stage_widths
            self.encoder = ConvEncoder(c.channels, widths, c.num_res_blocks)
            self.to_code = nn.Conv2d(widths[-1], code_dim, 1)
            self.from_code = nn.Conv2d(code_dim, widths[-1], 1)
            self.decoder = ConvDecoder(c.channels, widths, c.num_res_blocks)
        else:
            shape = (c.channels, c.image_size, c.downsample, c.st_dim, c.st_depth, c.st_heads, c.st_max_frames)
            self.encoder = STViViTEncoder(*shape)
            self.to_code = nn.Linear(c.st_dim, code_dim)
            self.from_code = nn.Linear(code_dim, c.st_dim)
            self.decoder = STViViTDecoder(*shape)

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
        if self.config.arch == "conv":
            z = self.to_code(self.encoder(frames.flatten(0, 1))).permute(0, 2, 3, 1)  # channel-last (B*T, h, w, D)
        else:
            z = self.to_code(self.encoder(frames)).flatten(0, 1)  # (B*T, h, w, D)
        return self.quantizer(z)

    def _decode_codes(self, z: torch.Tensor, batch: int) -> torch.Tensor:
        """float [B*T, h, w, D] -> raw (unclamped) frames float [B, T, C, H, W]."""
        if self.config.arch == "conv":
            x = self.decoder(self.from_code(z.permute(0, 3, 1, 2)))  # (B*T, C, H, W)
            return x.unflatten(0, (batch, -1))  # (B, T, C, H, W)
        return self.decoder(self.from_code(z.unflatten(0, (batch, -1))))  # (B, T, C, H, W)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, C, H, W] in [0, 1] -> tokens int64 [B, T, h, w]. Never changes the codebook."""
        return self._quantize(frames).indices.unflatten(0, frames.shape[:2])  # (B, T, h, w)

    def encode_moved(self, frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """The tokens of frames moved by integer camera shifts (``nextworld.data.camera.translate``:
        content moves by (dy, dx), the uncovered border repeats the edge): float [N, C, H, W] in
        [0, 1] and int [N, 2] -> int64 [N, h, w]; each frame alone (an ``st`` tokenizer's temporal
        context is not used). A motion-compensated dynamics keeps codes from these."""
        return self.encode(translate(frames, shifts)[:, None])[:, 0]

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
            batch: ``frames`` uint8 [B, T, H, W, C]. 'conv' reconstructs ``loss_frames`` random frames
                of each clip; 'st' a contiguous run of ``st_max_frames`` at a random start.
        Returns:
            scalar loss and metrics ``losses/recon``, ``losses/quantizer``, ``charts/psnr``
            (mean per-frame PSNR of the clamped reconstruction), ``charts/codebook_usage``,
            ``charts/perplexity`` (0-d tensors).
        """
        frames = batch["frames"]
        (b, t), device = frames.shape[:2], frames.device
        pick = None
        if self.config.arch == "st" and self.config.st_max_frames < t:
            # one window per clip, at a random start: what encode sees, every frame with its window's past
            k = self.config.st_max_frames
            pick = torch.randint(0, t - k + 1, (b, 1), device=device) + torch.arange(k, device=device)  # (B, k)
        elif self.config.arch == "conv" and 0 < self.config.loss_frames < t:
            # k distinct frames per clip, from a fresh random permutation each step
            pick = torch.rand(b, t, device=device).argsort(dim=1)[:, :self.config.loss_frames]  # (B, k)
        if pick is not None:
            frames = frames[torch.arange(b, device=device)[:, None], pick]  # (B, k, H, W, C)
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
