"""Metrics of learned representations (embeddings), as the JEPA evaluation reports them.

- ``per_dimension_std`` / ``collapse_metrics``: the spread of each embedding dimension
  over a sample; a collapsed encoder has dimensions whose std goes to 0.
- ``effective_rank``: Roy & Vetterli 2007, ``exp(H(p))`` with ``p`` the singular values of
  the centred embeddings divided by their sum; 1 when all samples lie on a line (or on a
  point), D when the spread is the same in every one of D orthogonal directions.
- ``fit_linear_probe`` / ``probe_r2``: how linearly the true state can be read from the
  embeddings (or from k-step open-loop predictions of them): a closed-form ridge
  regression on standardised inputs, scored by ``r2_score`` on held-out samples.

All arithmetic is in float64 on the CPU (inputs of any float dtype and device are copied
there), since an SVD or a normal-equation solve in float32 loses the small directions that
decide collapse. Inputs a user can get wrong (shapes, too few rows, NaN or inf) raise
``UserInputError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nextworld.errors import UserInputError

STD_FLOOR_RELATIVE = 1e-6  # dims whose std is below this fraction of the largest are not blown up
STD_FLOOR_ABSOLUTE = 1e-12  # and the floor never reaches 0, even when every dim is constant


def _as_matrix(name: str, x: torch.Tensor, min_rows: int = 2) -> torch.Tensor:
    """``x`` as a float64 CPU matrix [N, D], or a UserInputError naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise UserInputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise UserInputError(f"{name} must be a matrix [N, D], got shape {list(x.shape)}")
    if x.shape[0] < min_rows or x.shape[1] < 1:
        raise UserInputError(f"{name} needs at least {min_rows} rows and 1 column, got shape {list(x.shape)}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise UserInputError(f"{name} contains NaN or inf values")
    return x


def _same_rows(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise UserInputError(f"{name_a} and {name_b} must have one row per sample, got {a.shape[0]} "
                             f"and {b.shape[0]} rows")


def per_dimension_std(z: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each embedding dimension over the samples.

    The population std (``unbiased=False``, divided by N): it is a description of this
    sample's spread, and it is exactly 0 for a constant dimension whatever N is.

    Args:
        z: float [N, D], N >= 2.
    Returns:
        float64 [D].
    """
    z = _as_matrix("z", z)
    return z.std(dim=0, unbiased=False)


def effective_rank(z: torch.Tensor) -> float:
    """Roy & Vetterli's effective rank of the centred embeddings, in [1, min(N, D)].

    Steps: 1. centre each dimension; 2. singular values ``s`` of the centred [N, D] matrix,
    dropping those under round-off (``s_max * max(N, D) * eps``); 3. ``p = s / sum(s)``;
    4. ``exp(-sum(p * log p))``. k orthogonal directions of equal spread give exactly k.
    Embeddings with no spread at all (every row equal) are given rank 1, not NaN: they
    span a single point, the most collapsed case there is.

    Args:
        z: float [N, D], N >= 2.
    Returns:
        a Python float.
    """
    z = _as_matrix("z", z)
    centred = z - z.mean(dim=0)
    s = torch.linalg.svdvals(centred)  # (min(N, D),)
    eps = torch.finfo(torch.float64).eps
    # Centring a constant column leaves round-off of the size of its values, not 0; a
    # spread below that scale is no spread.
    noise = max(z.shape) * eps * z.abs().max().item() * math.sqrt(z.shape[0])
    if s.max().item() <= noise:
        return 1.0
    s = s[s > s.max() * max(z.shape) * eps]
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()).clamp(1.0, float(min(z.shape))))


def collapse_metrics(z: torch.Tensor) -> dict[str, float]:
    """Summary of how collapsed a batch of embeddings is.

    Args:
        z: float [..., D] with at least 2 vectors in all; leading dims (batch, time, tokens)
            are flattened into samples [N, D].
    Returns:
        ``embedding_std_mean`` and ``embedding_std_min`` (of ``per_dimension_std``),
        ``effective_rank`` and ``embedding_dim`` (D, as a float), all Python floats.
    """
    if not isinstance(z, torch.Tensor) or z.dim() < 2:
        shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise UserInputError(f"z must be embeddings [..., D] with at least 2 dims, got {shape}")
    flat = z.reshape(-1, z.shape[-1])  # (N, D)
    std = per_dimension_std(flat)
    return {
        "embedding_std_mean": float(std.mean()),
        "embedding_std_min": float(std.min()),
        "effective_rank": effective_rank(flat),
        "embedding_dim": float(flat.shape[1]),
    }


@dataclass
class LinearProbe:
    """A fitted linear read-out ``y ≈ ((z - z_mean) / z_std) @ weight + bias``.

    Attributes:
        weight: float64 [D, K], on standardised inputs.
        bias: float64 [K] (the mean of the training targets).
        z_mean: float64 [D], training mean of each input dimension.
        z_std: float64 [D], training std of each input dimension, floored (see
            ``fit_linear_probe``).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    z_mean: torch.Tensor
    z_std: torch.Tensor

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted targets of embeddings.

        Args:
            z: float [N, D] (N >= 1), D as in training.
        Returns:
            float64 [N, K].
        """
        z = _as_matrix("z", z, min_rows=1)
        if z.shape[1] != self.weight.shape[0]:
            raise UserInputError(f"z has {z.shape[1]} dims but the probe was fitted on {self.weight.shape[0]}")
        return ((z - self.z_mean) / self.z_std) @ self.weight + self.bias


def fit_linear_probe(z: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> LinearProbe:
    """Closed-form ridge regression of targets on standardised embeddings.

    Steps: 1. standardise each input dim by its training mean and population std, the std
    floored at ``max(1e-6 * largest std, 1e-12)`` so that (near-)constant dims stay small
    instead of being blown up; 2. centre the targets (their mean is the bias, not
    penalised); 3. solve ``(X^T X / N + ridge * I) W = X^T Y / N``. With standardised inputs
    ``X^T X / N`` is the correlation matrix, so ``ridge`` means the same at any N and scale.

    Args:
        z: float [N, D] embeddings, N >= 2.
        y: float [N, K] targets (e.g. the true state).
        ridge: penalty >= 0 on the squared weights (0 gives least squares where it is
            well posed).
    Returns:
        the fitted ``LinearProbe``.
    """
    z, y = _as_matrix("z", z), _as_matrix("y", y)
    _same_rows("z", z, "y", y)
    if not ridge >= 0 or not math.isfinite(ridge):
        raise UserInputError(f"ridge must be a finite number >= 0, got {ridge}")
    n, d = z.shape
    z_mean, std = z.mean(dim=0), z.std(dim=0, unbiased=False)
    z_std = std.clamp_min(max(STD_FLOOR_RELATIVE * std.max().item(), STD_FLOOR_ABSOLUTE))
    x = (z - z_mean) / z_std  # (N, D)
    y_mean = y.mean(dim=0)
    gram = x.T @ x / n + ridge * torch.eye(d, dtype=torch.float64)  # (D, D)
    weight = torch.linalg.lstsq(gram, x.T @ (y - y_mean) / n).solution  # (D, K); lstsq copes with ridge=0
    return LinearProbe(weight=weight, bias=y_mean, z_mean=z_mean, z_std=z_std)


def r2_score(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Coefficient of determination ``1 - SSE / SST``, pooled over all outputs.

    ``SSE`` is the sum of squared residuals over every sample and output; ``SST`` the sum
    of squares of ``y_true`` about the mean of each output. Pooling (rather than averaging
    one R² per output) weights each output by its variance, as scikit-learn's
    ``multioutput="variance_weighted"`` does, so a near-constant state component cannot
    dominate the score. 1 for a perfect prediction, 0 for predicting each output's mean,
    negative for worse than that.

    Args:
        y_true, y_pred: float [N] or [N, K] of one shape, N >= 2.
    Returns:
        a Python float.
    """
    for name, t in (("y_true", y_true), ("y_pred", y_pred)):
        if not isinstance(t, torch.Tensor):
            raise UserInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if y_true.shape != y_pred.shape:
        raise UserInputError(f"y_true and y_pred must share a shape, got {list(y_true.shape)} "
                             f"and {list(y_pred.shape)}")
    y_true = _as_matrix("y_true", y_true[:, None] if y_true.dim() == 1 else y_true)  # (N, K)
    y_pred = _as_matrix("y_pred", y_pred[:, None] if y_pred.dim() == 1 else y_pred)
    sst = (y_true - y_true.mean(dim=0)).square().sum()
    if sst.item() == 0:
        raise UserInputError("y_true is constant, so R² is undefined")
    sse = (y_true - y_pred).square().sum()
    return float(1 - sse / sst)


def probe_r2(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
             ridge: float = 1e-3) -> float:
    """Held-out R² of a linear probe: fit on the training pairs, score on the test pairs.

    Args:
        train_z: float [N, D] embeddings (or predictions of them); train_y: float [N, K].
        test_z: float [M, D]; test_y: float [M, K], M >= 2.
        ridge: see ``fit_linear_probe``.
    Returns:
        ``r2_score(test_y, probe.predict(test_z))``, a Python float.
    """
    train_z, train_y = _as_matrix("train_z", train_z), _as_matrix("train_y", train_y)
    test_z, test_y = _as_matrix("test_z", test_z), _as_matrix("test_y", test_y)
    _same_rows("train_z", train_z, "train_y", train_y)
    _same_rows("test_z", test_z, "test_y", test_y)
    if test_z.shape[1] != train_z.shape[1]:
        raise UserInputError(f"test_z has {test_z.shape[1]} dims but train_z has {train_z.shape[1]}")
    probe = fit_linear_probe(train_z, train_y, ridge=ridge)
    if test_y.shape[1] != probe.bias.shape[0]:
        raise UserInputError(f"test_y has {test_y.shape[1]} outputs but train_y has {probe.bias.shape[0]}")
    return r2_score(test_y, probe.predict(test_z))
