"""Symlog, symexp and two-hot regression: predicting rewards and values of any scale.

DreamerV3 (Hafner et al. 2023) regresses rewards and returns by classification: the target
``y`` becomes a two-hot vector over ``num_bins`` bins spaced evenly in symlog space (so the
bins themselves are ``symexp``-spaced: dense near 0, exponentially wide far from it), the
network's logits are trained with cross-entropy against it, and the prediction is
``symexp(sum_k softmax(logits)_k * bin_k)``. Gradients then do not grow with the size of the
rewards, and a bimodal target (a reward that comes or not) is fitted without averaging.

``symlog(x) = sign(x) * log(1 + |x|)``, ``symexp`` its inverse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Encode values as two-hot vectors over symlog-spaced bins; decode logits to values.

    ``bins`` is a buffer: the positions in symlog space, ``linspace(-limit, limit, num_bins)``.
    """

    def __init__(self, num_bins: int = 255, limit: float = 20.0) -> None:
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins {num_bins}: need at least 2")
        self.register_buffer("bins", torch.linspace(-limit, limit, num_bins), persistent=False)

    @property
    def num_bins(self) -> int:
        return int(self.bins.numel())

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Values ``y`` [...] -> two-hot weights [..., num_bins] (each row sums to 1).

        The two bins around ``symlog(y)`` share the weight in proportion to closeness, so
        ``sum_k w_k * bin_k == symlog(y)`` exactly (within the bins' range; outside it, all the
        weight goes to the end bin).
        """
        x = symlog(y.float()).clamp(self.bins[0], self.bins[-1])
        above = torch.searchsorted(self.bins, x.contiguous(), right=True).clamp(1, self.num_bins - 1)
        below = above - 1
        lo, hi = self.bins[below], self.bins[above]
        w_hi = ((x - lo) / (hi - lo)).clamp(0, 1)
        return (F.one_hot(below, self.num_bins) * (1 - w_hi).unsqueeze(-1)
                + F.one_hot(above, self.num_bins) * w_hi.unsqueeze(-1))

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., num_bins] -> values [...]: symexp of the expected bin position."""
        return symexp((logits.float().softmax(-1) * self.bins).sum(-1))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``logits`` [..., num_bins] against two-hot(``y``) [...], per element."""
        return -(self.encode(y.detach()) * logits.float().log_softmax(-1)).sum(-1)
