"""Collapse prevention for joint-embedding models: the terms a config can choose from.

A JEPA that predicts its own embeddings can win by making every embedding the same
(collapse). Three remedies are in use, and ``JEPAWorldConfig.regularizer`` picks one:

- ``vicreg`` (Bardes et al. 2022, as PLDM uses it): keep each dimension's standard deviation
  over the batch above 1 (``variance_loss``), decorrelate the dimensions
  (``covariance_loss``); gradients flow into the targets too.
- ``ema`` (BYOL, I-JEPA): targets come from a slowly moving copy of the encoder under
  stop-gradient (``nextworld.nn.ema``); no term here.
- ``sigreg`` (LeJEPA, Balestriero & LeCun 2025): push the embeddings towards an isotropic
  Gaussian by testing random 1-D projections against N(0, 1) with the Epps–Pulley statistic
  (``sigreg_loss``).

All functions take embeddings ``z`` float [N, D] (flatten batch and time first) and return a
0-d tensor.
"""

from __future__ import annotations

import torch


def variance_loss(z: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance term: mean over dimensions of relu(target_std - std over the batch)."""
    std = torch.sqrt(z.var(dim=0) + eps)  # (D,)
    return torch.relu(target_std - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term: sum of squared off-diagonal covariances, divided by D."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / max(n - 1, 1)  # (D, D)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


def sigreg_loss(z: torch.Tensor, directions: int = 64, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """SIGReg: how far random 1-D projections of ``z`` are from N(0, 1), averaged over directions.

    Each of ``directions`` unit vectors u (drawn from torch's global generator, so a resumed
    run draws the same ones) projects the N embeddings to x = z u. The Epps–Pulley statistic
    compares their empirical characteristic function phi_N(t) = mean exp(i t x) with the
    Gaussian's exp(-t^2 / 2), weighted by exp(-t^2 / 2):
    ``integral w(t) |phi_N(t) - exp(-t^2/2)|^2 dt``, by the trapezoid rule on ``knots`` points
    of [0, t_max] (the integrand is even in t, so twice that). It is 0 exactly when the
    projections' characteristic function matches the Gaussian's on the grid.
    """
    n, d = z.shape
    u = torch.randn(d, directions, device=z.device, dtype=z.dtype)
    u = u / u.norm(dim=0, keepdim=True)
    x = z @ u  # (N, M)
    t = torch.linspace(0.0, t_max, knots, device=z.device, dtype=z.dtype)  # (K,)
    tx = x.unsqueeze(-1) * t  # (N, M, K)
    real = torch.cos(tx).mean(dim=0)  # (M, K)
    imag = torch.sin(tx).mean(dim=0)
    gauss = torch.exp(-0.5 * t * t)  # (K,)
    err = (real - gauss).pow(2) + imag.pow(2)  # (M, K)
    integral = 2.0 * torch.trapezoid(err * gauss, t, dim=-1)  # (M,)
    return integral.mean()


def temporal_smoothness(z: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between consecutive embeddings of a sequence, z float [B, T, D]."""
    return (z[:, 1:] - z[:, :-1]).pow(2).sum(dim=-1).mean()
