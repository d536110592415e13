"""The metric definitions of the project, one implementation each (DESIGN.md "Metric definitions").

- ``psnr``: per frame, ``10 * log10(1 / MSE)`` over all channels and pixels of frames in
  [0, 1]; MSE is clamped at 1e-10, so identical frames score 100 dB, not infinity.
- ``ssim``: per frame, Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5),
  K1 = 0.01, K2 = 0.03, data range 1, over the 'valid' region (no padding), computed per
  channel and averaged over channels and positions.
- ``codebook_usage``: fraction of the ``num_codes`` codes that occur at least once.
- ``normalised_mutual_information``: I(a; b) / mean(H(a), H(b)) of two labelings (the
  arithmetic normalisation, scikit-learn's default); 1 when both put everything in one class.

Per-frame values are returned so that callers average (or index time steps) themselves.
This module imports nothing else from nextworld, so every layer may use it: a training
loss reports the same numbers that evaluation does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
MIN_MSE = 1e-10


def _check_frames(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() < 3:
        raise ValueError(f"pred and target must share a shape [..., C, H, W], got {list(pred.shape)} "
                         f"and {list(target.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each frame.

    Args:
        pred, target: float [..., C, H, W] in [0, 1].
    Returns:
        float [...] (e.g. [N] for [N, C, H, W] input, [B, T] for [B, T, C, H, W]).
    """
    _check_frames(pred, target)
    mse = (pred.float() - target.float()).square().mean(dim=(-3, -2, -1))
    return -10 * torch.log10(mse.clamp_min(MIN_MSE))


def _gaussian_window(device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-x.square() / (2 * SSIM_SIGMA ** 2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each frame (1 for identical frames).

    Args:
        pred, target: float [..., C, H, W] in [0, 1], H and W at least 11.
    Returns:
        float [...], one value per frame.
    """
    _check_frames(pred, target)
    *lead, c, h, w = pred.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    x = pred.reshape(-1, c, h, w).float()  # (N, C, H, W)
    y = target.reshape(-1, c, h, w).float()
    # The five local moments of every channel, blurred at once by one separable
    # depthwise Gaussian (two 1-D passes instead of one 11x11).
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
    g = _gaussian_window(x.device)
    groups = stats.shape[1]
    stats = F.conv2d(stats, g.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    stats = F.conv2d(stats, g.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)  # each (N, C, H-10, W-10)
    var_x, var_y, cov = xx - mu_x.square(), yy - mu_y.square(), xy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
         / ((mu_x.square() + mu_y.square() + SSIM_C1) * (var_x + var_y + SSIM_C2)))
    return s.mean(dim=(-3, -2, -1)).reshape(lead)


def codebook_usage(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Fraction of the codebook that ``indices`` use.

    Args:
        indices: int64, any shape, values in [0, num_codes).
        num_codes: size of the codebook.
    Returns:
        0-d float tensor in [0, 1] (a tensor, so a training step need not wait for the device).
    """
    counts = torch.bincount(indices.flatten(), minlength=num_codes)
    return (counts > 0).float().sum() / num_codes


def normalised_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """How much one labeling tells about the other, in [0, 1], whatever the label names.

    1 when each is a function of the other (a relabelling), 0 when they are independent
    (in the sample). Natural logarithms; ``I(a; b) / ((H(a) + H(b)) / 2)``; two constant
    labelings score 1, a constant and a varying one 0.

    Args:
        a, b: non-negative integer labels, same number of elements (any shape, flattened).
    Returns:
        a Python float.
    """
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"normalised_mutual_information needs two non-empty labelings of one length, "
                         f"got {a.size} and {b.size} labels")
    _, a = np.unique(a, return_inverse=True)  # labels -> 0..K-1, so sparse names cost nothing
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= a.size  # (Ka, Kb) joint distribution
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    h_a, h_b = -(pa * np.log(pa)).sum(), -(pb * np.log(pb)).sum()  # every marginal entry is > 0
    if h_a == 0 and h_b == 0:
        return 1.0
    nz = joint > 0
    mutual = (joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum()
    return float(np.clip(mutual / ((h_a + h_b) / 2), 0.0, 1.0))
