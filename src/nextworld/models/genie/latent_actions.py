"""Genie's latent action model (stage 2 of Bruce et al. 2024): discrete actions inferred from video alone.

An encoder looks at a clip's pixels and names, for every transition t -> t+1, one of
``num_actions`` latent actions ``a_t``; a decoder must then predict frame t+1 from frames
0..t and ``a_t``. Training on the decoder's pixel error makes ``a_t`` say what changed
between the frames that the past alone cannot tell: for a game, the player's input.

Encoder: frames are cut into ``patch`` x ``patch`` patches, embedded, and run through a causal
space-time transformer, so its output at frame t+1 has seen frames 0..t+1. The output is
pooled over the patches, and the latent of transition t -> t+1 is the pooled output at
frame t+1 minus that at frame t, projected to ``action_dim`` and quantized to the nearest of
``num_actions`` codes: ``a_t``. The difference is there because the quantizer matches
directions (cosine): pooled features of neighbouring frames share a large common part (the
scene), and taken alone they all point the same way, so every code collapses onto that one
direction (a mean cosine of 0.9999 to their mean in a ramp world). The difference cancels
the scene and keeps what changed. In the 4-move world of ``tests/test_latent_actions.py``
(300 steps, 3 seeds) the actions' NMI with the true moves was 0.14-0.35 from frame t+1's
output alone and 0.77-0.84 from the difference.

Decoder: its own patch embedding and causal space-time transformer over frames 0..T-2; the
(up-projected) code of ``a_t`` is added to every token of frame t, and the output at frame t
is mapped patch by patch to the pixels of frame t+1. As in ``dynamics.py`` (and Jafar), the
action is added to the tokens *from which* the frame it leads to is predicted; here those
are frame t's, since frame t+1's pixels are the target and never an input of its prediction.

Two guards keep the actions meaningful:

1. Against unused codes: the ``VectorQuantizer`` restarts codes whose moving-average share
   of assignments falls below ``restart_threshold`` of a uniform share from latents of the
   current batch, and ``loss`` logs ``charts/action_usage`` and ``charts/action_perplexity``.
2. Against the action carrying the whole next frame: frame t+1 reaches its own prediction
   only through ``a_t``, one code out of ``num_actions`` (log2(8) = 3 bits per transition),
   squeezed through an ``action_dim``-wide projection; the decoder sees only frames <= t
   besides it, and the code is handed over exactly (see ``_action_codes``), so two next
   frames with the same action give bit-identical predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nextworld.data.frames import to_model_frames
from nextworld.errors import UserInputError
from nextworld.data.camera import MAX_SHIFT, camera_shifts
from nextworld.eval.metrics import psnr
from nextworld.nn.quantizers import QuantizerOutput, VectorQuantizer
from nextworld.nn.space_time import SpaceTimeTransformer
from nextworld.nn.st_vivit import patchify, unpatchify


def shift_classes(max_shift: int = MAX_SHIFT) -> int:
    """How many camera shifts a motion head tells apart: (dy, dx) in [-max_shift, max_shift]^2."""
    return (2 * max_shift + 1) ** 2


SHIFT_CLASSES = shift_classes()
"""Camera shifts of at most ``MAX_SHIFT`` (4) pixels: (dy, dx) in [-4, 4]^2, 81 classes."""


def class_of_shift(shifts: torch.Tensor, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """int [..., 2] shifts (dy, dx) in [-max_shift, max_shift]^2 -> int64 [...] classes,
    (dy + max_shift) * (2 * max_shift + 1) + dx + max_shift."""
    side = 2 * max_shift + 1
    return ((shifts[..., 0] + max_shift) * side + shifts[..., 1] + max_shift).long()


def shift_of_class(classes: torch.Tensor, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """int64 [...] classes -> int64 [..., 2] shifts (dy, dx), inverting ``class_of_shift``."""
    side = 2 * max_shift + 1
    return torch.stack([classes // side - max_shift, classes % side - max_shift], dim=-1)


@dataclass
class LatentActionConfig:
    """Shape and training knobs of a ``LatentActionModel``."""

    image_size: int = 64
    """Height and width of the (square) frames, in pixels."""
    channels: int = 3
    """Colour channels of the frames."""
    patch: int = 8
    """Pixels per patch side: 64x64 frames with 8 give 8x8 patches per frame."""
    dim: int = 256
    """Width of the encoder's and the decoder's transformers."""
    depth: int = 4
    """Space-time blocks in the encoder, and again in the decoder."""
    heads: int = 8
    """Attention heads (``dim`` must be divisible by them)."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of ``dim``."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches."""
    num_actions: int = 8
    """Latent actions: codes in the action codebook (3 bits per transition with 8)."""
    action_dim: int = 16
    """Width of the action bottleneck: the encoder's pooled output is projected to it and
    quantized there, so little beyond the choice of code can pass."""
    commitment_beta: float = 0.01
    """Weight of the VQ commitment loss, which pulls encoder outputs towards their codes.
    Lower than a tokenizer's 0.25: with 8 codes, early training merges moves into one code,
    and a strong pull back to that code keeps them merged. In the 4-move test world (300
    steps, 3 seeds) NMI with the true moves was 0.42-0.54 with 0.25 and 0.77-0.84 with 0.01."""
    restart_threshold: float = 0.03
    """An action code is re-initialised from the batch when its moving-average share of
    assignments falls below this fraction of a uniform share."""
    usage_decay: float = 0.9
    """Decay of the moving average of action code usage: a code that stops being used is
    restarted after about log(restart_threshold) / log(usage_decay) steps (33 with the defaults)."""
    max_frames: int = 16
    """Most frames in a clip: the training clip length, and the context of ``predict_next``
    plus the frame it predicts."""
    pixel_differences: bool = False
    """Also give the encoder each frame's pixel difference from the frame before (zero for
    the first frame of a clip), patch by patch: a sprite's one-pixel move or a scroll is
    plain in a difference image and faint in the frame itself."""

    motion_weight: float = 0.0
    """Weight of an auxiliary loss that makes each latent action name the camera's motion: from
    its code alone, a linear head must tell the integer shift (dy, dx) in [-m, m]^2 (m:
    ``motion_max_shift``) that best aligns the transition's two frames (``nextworld.data.camera.camera_shifts``, read off the
    pixels: no recorded action). 0 (Genie's LAM) leaves the head out. With it, ``action_shifts``
    gives each action's shift, which a motion-compensated dynamics (``DynamicsConfig.action_shifts``)
    moves the last frame by."""
    motion_max_shift: int = MAX_SHIFT
    """Largest camera shift along each axis, in pixels, that the motion loss reads and an action
    may name. CoinRun's camera moves up to about 7 pixels a frame when the agent jumps or falls
    (64×64 frames), more with a frame skip; a move beyond the bound is read as the best shift
    within it."""

    def __post_init__(self) -> None:
        if not self.motion_weight >= 0:
            raise UserInputError(f"latent action model motion_weight must be >= 0, got {self.motion_weight}")
        if not (isinstance(self.motion_max_shift, int) and self.motion_max_shift >= 1):
            raise UserInputError(f"latent action model motion_max_shift must be an integer >= 1, "
                                 f"got {self.motion_max_shift!r}")
        if self.motion_weight > 0 and self.image_size <= 2 * (self.motion_max_shift + 4):
            raise UserInputError(f"latent action model motion_weight needs frames larger than "
                                 f"{2 * (self.motion_max_shift + 4)} pixels to read camera shifts of up to "
                                 f"{self.motion_max_shift}, got image_size {self.image_size}")
        if self.image_size % self.patch:
            raise UserInputError(f"latent action model image_size {self.image_size} is not divisible "
                                 f"by patch {self.patch}")
        if self.dim % self.heads:
            raise UserInputError(f"latent action model dim {self.dim} is not divisible by heads {self.heads}")
        if self.num_actions < 2:
            raise UserInputError(f"latent action model needs num_actions >= 2, got {self.num_actions}")
        if self.max_frames < 2:
            raise UserInputError(f"latent action model needs max_frames >= 2 (one transition), got {self.max_frames}")
        if min(self.patch, self.action_dim, self.depth, self.channels) < 1:
            raise UserInputError("latent action model patch, action_dim, depth and channels must be positive")

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(h, w): patches per frame along each side."""
        return self.image_size // self.patch, self.image_size // self.patch

    @property
    def patches_per_frame(self) -> int:
        return (self.image_size // self.patch) ** 2

    @property
    def patch_pixels(self) -> int:
        """Values in one patch: channels * patch * patch."""
        return self.channels * self.patch * self.patch


class LatentActionModel(nn.Module):
    """Frames float [B, T, C, H, W] in [0, 1] -> latent actions int64 [B, T-1], and next frames from actions."""

    def __init__(self, config: LatentActionConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder_embedding = nn.Linear(c.patch_pixels * (2 if c.pixel_differences else 1), c.dim)
        self.encoder = SpaceTimeTransformer(c.dim, c.depth, c.heads, c.mlp_ratio, c.dropout,
                                            c.max_frames, c.patches_per_frame)
        self.to_action = nn.Linear(c.dim, c.action_dim)
        self.quantizer = VectorQuantizer(c.num_actions, c.action_dim, c.commitment_beta,
                                         c.restart_threshold, c.usage_decay)
        self.from_action = nn.Linear(c.action_dim, c.dim)
        self.decoder_embedding = nn.Linear(c.patch_pixels, c.dim)
        # the decoder sees frames 0..T-2 of a clip of at most max_frames
        self.decoder = SpaceTimeTransformer(c.dim, c.depth, c.heads, c.mlp_ratio, c.dropout,
                                            c.max_frames - 1, c.patches_per_frame)
        self.head = nn.Linear(c.dim, c.patch_pixels)
        # only with motion_weight > 0, so a Genie LAM's weights stay what they were
        self.motion_head = nn.Linear(c.action_dim, shift_classes(c.motion_max_shift)) if c.motion_weight > 0 else None
        for layer in (self.encoder_embedding, self.to_action, self.from_action, self.decoder_embedding, self.head):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    @property
    def num_actions(self) -> int:
        return self.config.num_actions

    # ------------------------------------------------------------------------ pixels <-> patches

    def _check_frames(self, frames: torch.Tensor, least: int, most: int) -> None:
        c, s = self.config.channels, self.config.image_size
        if frames.dim() != 5 or tuple(frames.shape[2:]) != (c, s, s):
            raise ValueError(f"latent action model expects frames [B, T, {c}, {s}, {s}], got {list(frames.shape)}")
        if not least <= frames.shape[1] <= most:
            raise ValueError(f"latent action model expects {least} to {most} frames, got {frames.shape[1]}")

    def _patchify(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, C, H, W] -> [B, T, S, C*p*p], patches in row-major order."""
        return patchify(frames, self.config.patch).flatten(2, 3)  # (B, T, S, C*p*p)

    def _unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """float [B, T, S, C*p*p] -> [B, T, C, H, W]."""
        grid = patches.unflatten(2, self.config.patch_grid)  # (B, T, h, w, C*p*p)
        return unpatchify(grid, self.config.channels, self.config.patch)

    # ------------------------------------------------------------------------ encoder and decoder

    def _encode(self, frames: torch.Tensor) -> QuantizerOutput:
        """float [B, T, C, H, W] -> QuantizerOutput with z [B, T-1, action_dim] and indices [B, T-1].

        The latent of transition t -> t+1 comes from the encoder's outputs at frames t and
        t+1, which causal attention limits to frames 0..t+1.
        """
        patches = self._patchify(frames)  # (B, T, S, C*p*p)
        if self.config.pixel_differences:
            change = torch.cat([torch.zeros_like(patches[:, :1]), patches[:, 1:] - patches[:, :-1]], dim=1)
            patches = torch.cat([patches, change], dim=-1)  # (B, T, S, 2*C*p*p)
        x = self.encoder(self.encoder_embedding(patches)).mean(dim=2)  # (B, T, D)
        z = self.to_action(x[:, 1:] - x[:, :-1])  # (B, T-1, action_dim)
        return self.quantizer(z)

    def _action_codes(self, q: QuantizerOutput) -> torch.Tensor:
        """The codes of the chosen actions, float [B, T-1, action_dim], with the straight-through gradient.

        The forward value is the codebook row itself (``q.z - q.z.detach()`` is exactly zero),
        not ``q.z``, whose straight-through sum may differ from the code in the last bit; so
        the decoder's input depends on the action index alone.
        """
        return self.quantizer.indices_to_codes(q.indices).detach() + (q.z - q.z.detach())

    def _decode(self, context: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Raw (unclamped) predictions of the frames that follow each context frame.

        Args:
            context: float [B, T, C, H, W], frames 0..T-1.
            codes: float [B, T, action_dim]; ``codes[:, t]`` is the action taken after frame t.
        Returns:
            float [B, T, C, H, W]; entry t predicts frame t+1 from frames 0..t and actions 0..t.
        """
        x = self.decoder_embedding(self._patchify(context))  # (B, T, S, D)
        x = x + self.from_action(codes)[:, :, None]  # (B, T, S, D), a_t on every token of frame t
        return self._unpatchify(self.head(self.decoder(x)))  # (B, T, C, H, W)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Infer the actions of a clip and predict frames 1..T-1 from them, with gradients.

        Args:
            frames: float [B, T, C, H, W] in [0, 1], T >= 2.
        Returns:
            raw predictions float [B, T-1, C, H, W] of frames 1..T-1 (unclamped) and the
            quantizer output (z [B, T-1, action_dim], indices [B, T-1], loss, metrics).
        """
        self._check_frames(frames, 2, self.config.max_frames)
        q = self._encode(frames)
        return self._decode(frames[:, :-1], self._action_codes(q)), q

    # ------------------------------------------------------------------------ using a trained model

    @torch.no_grad()
    def infer_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """The latent action of every transition of a clip. Never changes the codebook.

        Args:
            frames: float [B, T, C, H, W] in [0, 1], T >= 2.
        Returns:
            int64 [B, T-1] in [0, num_actions); entry t is the action between frames t and t+1.
        """
        self._check_frames(frames, 2, self.config.max_frames)
        return self._encode(frames).indices

    @torch.no_grad()
    def predict_next(self, frames: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The frame that follows a context under given latent actions (no gradient).

        Args:
            frames: float [B, t, C, H, W] in [0, 1], frames 0..t-1 (t < max_frames).
            actions: int64 [B, t]; ``actions[:, i]`` is taken after frame i, so the last one
                leads to the predicted frame.
        Returns:
            float [B, C, H, W] in [0, 1], the predicted frame t.
        """
        self._check_frames(frames, 1, self.config.max_frames - 1)
        if tuple(actions.shape) != tuple(frames.shape[:2]):
            raise ValueError(f"predict_next expects actions {list(frames.shape[:2])} for frames "
                             f"{list(frames.shape)}, got {list(actions.shape)}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.num_actions):
            raise ValueError(f"latent actions must lie in [0, {self.num_actions}), got values "
                             f"{int(actions.min())}..{int(actions.max())}")
        return self._decode(frames, self.quantizer.indices_to_codes(actions))[:, -1].clamp(0, 1)

    @torch.no_grad()
    def action_shifts(self) -> torch.Tensor | None:
        """int64 [num_actions, 2]: the camera shift (dy, dx) each latent action names, the motion
        head's most likely class for its code; None without a motion head (``motion_weight`` 0)."""
        if self.motion_head is None:
            return None
        classes = self.motion_head(self.quantizer.indices_to_codes(torch.arange(self.num_actions,
                                                                                device=self.head.weight.device)))
        return shift_of_class(classes.argmax(dim=-1), self.config.motion_max_shift)

    # ------------------------------------------------------------------------ training

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Next-frame pixel MSE + VQ loss on a batch of clips.

        Args:
            batch: ``frames`` uint8 [B, T, H, W, C], T >= 2.
        Returns:
            scalar loss (a mean over clips: every clip has T-1 predicted frames and T-1
            actions) and metrics ``losses/lam_recon`` (MSE of predicted frames 1..T-1),
            ``losses/lam_vq``, ``charts/lam_psnr`` (mean per-frame PSNR of the clamped
            predictions), ``charts/action_usage`` (fraction of the action codes used in the
            batch) and ``charts/action_perplexity``, as 0-d tensors; with ``motion_weight``,
            also ``losses/lam_motion`` (the motion head's cross-entropy, added with that weight)
            and ``charts/lam_motion_accuracy``.
        """
        frames = batch["frames"]
        if frames.dim() != 5 or frames.shape[1] < 2:
            raise ValueError(f"latent action loss needs frames [B, T >= 2, H, W, C], got {list(frames.shape)}")
        x = to_model_frames(frames)  # (B, T, C, H, W)
        pred, q = self(x)  # (B, T-1, C, H, W)
        target = x[:, 1:]
        recon = F.mse_loss(pred, target)
        metrics = {
            "losses/lam_recon": recon.detach(),
            "losses/lam_vq": q.loss.detach(),
            "charts/lam_psnr": psnr(pred.detach().clamp(0, 1), target).mean(),
            "charts/action_usage": q.metrics["codebook_usage"],
            "charts/action_perplexity": q.metrics["perplexity"],
        }
        loss = recon + q.loss
        if self.motion_head is not None:
            m = self.config.motion_max_shift
            truth = class_of_shift(camera_shifts(x, m), m)  # (B, T-1)
            logits = self.motion_head(self._action_codes(q))  # (B, T-1, shift classes), from the code alone
            motion = F.cross_entropy(logits.flatten(0, 1), truth.flatten())
            loss = loss + self.config.motion_weight * motion
            metrics["losses/lam_motion"] = motion.detach()
            metrics["charts/lam_motion_accuracy"] = (logits.detach().argmax(dim=-1) == truth).float().mean()
        return loss, metrics


@torch.no_grad()
def infer_actions_windowed(lam: LatentActionModel, frames: torch.Tensor) -> torch.Tensor:
    """The latent action of every transition of a clip of any length, float [B, T, C, H, W] -> int64 [B, T-1].

    Clips longer than the model's ``max_frames`` are read in windows that overlap by one frame,
    so every transition is seen once.
    """
    n = lam.config.max_frames
    return torch.cat([lam.infer_actions(frames[:, start:start + n]) for start in range(0, frames.shape[1] - 1, n - 1)],
                     dim=1)


@torch.no_grad()
def modal_action_shifts(lam: LatentActionModel, batches) -> torch.Tensor:
    """int64 [num_actions, 2]: for each latent action, the camera shift most common among the
    transitions it labels in ``batches`` (an iterable of float clips [B, T, C, H, W]).

    The shifts are read off the pixels (``camera_shifts``, up to ``motion_max_shift``), so no
    recorded action is used. This is the shift a motion-compensated dynamics moves the last
    frame by for that action. The motion head's own choice (``action_shifts``) often falls short:
    with a small ``motion_weight`` it names (0, 0) for a code whose moves are spread over
    several shifts. Among equally common shifts the smallest (|dy| + |dx|, then the lowest class)
    wins; an action that labels no transition keeps the head's choice.
    """
    named = lam.action_shifts()
    if named is None:
        raise ValueError("a latent action model without a motion head (motion_weight 0) names no shifts")
    m = lam.config.motion_max_shift
    counts = torch.zeros(lam.num_actions, shift_classes(m), dtype=torch.long)
    for frames in batches:
        actions = infer_actions_windowed(lam, frames).flatten().cpu()
        classes = class_of_shift(camera_shifts(frames, m), m).flatten().cpu()
        counts.index_put_((actions, classes), torch.ones_like(actions), accumulate=True)
    every = shift_of_class(torch.arange(counts.shape[1]), m)  # (classes, 2)
    size = every.abs().sum(dim=1)  # a tie goes to the smallest move: a world that errs should not jump
    tied = counts == counts.max(dim=1, keepdim=True).values
    modal = every[torch.where(tied, size, size.max() + 1).argmin(dim=1)]
    unseen = counts.sum(dim=1) == 0
    modal[unseen] = named.cpu()[unseen]
    return modal
