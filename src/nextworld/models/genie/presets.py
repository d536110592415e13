"""Named configs of the Genie stages: ``tiny`` (2 CPU cores, an hour in all), ``small``, ``base`` (one GPU).

Tokenizer, measured on 64x64 CoinRun frames (train levels 0-9,999, held-out levels >=
100,000): ``tiny`` is a conv VQ-VAE with 4x4 pixels per token (16x16 tokens, 512 codes of 8
dimensions). Its 12,000-step recipe reached 30.35 dB held-out PSNR (SSIM 0.870, every code
used). With 8x8 pixels per token it had stalled near 26.8 dB in 10 minutes, where 4x4 gave
27.9 dB in 8; in equal CPU time the conv tokenizer beat an ST-ViViT of the same step cost by
0.8 dB (docs/benchmarks.md), so the presets are conv. The 16x16 grid would cost the dynamics
4x the positions; ``token_patch=2`` groups 2x2 tokens per transformer position instead.
``base`` follows Genie's CoinRun case study: 4x4 pixels per token, 1024 codes.
"""

import torch

from nextworld.models.genie.dynamics import DynamicsConfig
from nextworld.models.genie.latent_actions import LatentActionConfig
from nextworld.models.genie.tokenizer import TokenizerConfig

TOKENIZER_PRESETS: dict[str, TokenizerConfig] = {
    "tiny": TokenizerConfig(downsample=4, width=64, num_res_blocks=1, codebook_size=512, code_dim=8),
    "small": TokenizerConfig(downsample=4, width=128, num_res_blocks=2, codebook_size=1024, code_dim=8),
    "base": TokenizerConfig(downsample=4, width=256, num_res_blocks=4, codebook_size=1024, code_dim=32),
}


LAM_PRESETS: dict[str, LatentActionConfig] = {
    # tiny: its 8 codes also name the camera's motion, so its world is motion-compensated; it reads pixel
    # differences too, where a one-pixel sideways scroll shows (docs/genie.md)
    "tiny": LatentActionConfig(patch=8, dim=128, depth=2, heads=4, max_frames=8, motion_weight=0.02,
                               pixel_differences=True, motion_max_shift=8),
    "small": LatentActionConfig(patch=8, dim=256, depth=4, heads=8, max_frames=16),
    # Genie's CoinRun case study: 16x16 patches of 64x64 frames would be 4x4; its LAM is ~300M params
    # on 16 frames; this keeps the shape (8 codes) at a size one GPU trains in hours.
    "base": LatentActionConfig(patch=4, dim=512, depth=8, heads=8, max_frames=16),
}
"""Latent action models; each infers 8 latent actions (Genie's choice for its worlds). ``tiny`` adds
the motion loss (``motion_weight``), which gives it a motion-compensated dynamics: on CoinRun's
validation split its world dreamed 19.41 dB at t10 after 500 dynamics steps against the copy's
18.85 (64 clips), where the plain Genie world stays below the copy (docs/genie.md). With pixel
differences its named shifts translate the view 0.3 dB closer to the real frame 10 (19.79
against 19.48 on the validation split), and its world dreamed 19.36 held out against 19.02.
``motion_max_shift`` 8: CoinRun's camera moves up to about 7 pixels a frame in jumps and falls, and
a 4-pixel bound read those moves as 4 (docs/genie.md, "Larger moves")."""

DYNAMICS_SHAPES: dict[str, dict[str, int | float]] = {
    "tiny": {"dim": 128, "depth": 4, "heads": 4, "max_frames": 8, "token_patch": 2},
    "small": {"dim": 256, "depth": 6, "heads": 8, "max_frames": 16, "token_patch": 2},
    "base": {"dim": 512, "depth": 12, "heads": 8, "max_frames": 16},
}
"""Dynamics transformer sizes; its vocabulary and grid come from the tokenizer, its actions from the LAM."""


def dynamics_config(preset: str, tokenizer: TokenizerConfig, num_codes: int, num_actions: int,
                    action_shifts: torch.Tensor | None = None) -> DynamicsConfig:
    """The dynamics config of ``preset`` for a trained tokenizer (``num_codes``, its token grid) and LAM.

    A LAM that names camera shifts (``action_shifts``, from ``motion_weight``; the recipe passes
    each action's shift as measured on the training clips) gets a motion-compensated dynamics: ``copy_path`` on, keeping codes of the frame moved by each
    action's shift."""
    shape = dict(DYNAMICS_SHAPES[preset])
    if action_shifts is not None:
        shape.update(copy_path=True, action_shifts=tuple(map(tuple, action_shifts.tolist())))
    return DynamicsConfig(num_codes=num_codes, token_grid=tokenizer.token_grid, num_actions=num_actions, **shape)
