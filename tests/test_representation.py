"""Representation metrics: collapse (std, effective rank) and linear-probe R²."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nextworld.errors import UserInputError
from nextworld.eval.representation import (
    LinearProbe,
    collapse_metrics,
    effective_rank,
    fit_linear_probe,
    per_dimension_std,
    probe_r2,
    r2_score,
)


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_effective_rank_of_isotropic_gaussian_is_close_to_the_dimension() -> None:
    z = torch.randn(4000, 8, generator=_generator())
    assert effective_rank(z) == pytest.approx(8.0, abs=0.05)


def test_effective_rank_of_points_on_a_line_is_one() -> None:
    t = torch.randn(500, 1, generator=_generator(), dtype=torch.float64)
    direction = torch.tensor([[0.3, -1.2, 0.5, 2.0, 0.1, -0.7]], dtype=torch.float64)
    offset = torch.tensor([5.0, -3.0, 0.0, 1.0, 2.0, 7.0], dtype=torch.float64)  # a line not through 0
    z = t @ direction + offset
    assert effective_rank(z) == pytest.approx(1.0, abs=1e-9)
    # float32 rounding of the points leaves them off the line by ~1e-7, which barely counts.
    assert effective_rank(z.float()) == pytest.approx(1.0, abs=1e-4)


def test_effective_rank_of_k_equal_orthogonal_directions_is_k() -> None:
    # Rows +e_i and -e_i for i < 3 in 5 dims: centred already, three singular values of sqrt(2).
    eye = torch.eye(5)[:3]
    z = torch.cat([eye, -eye]) * 4.0 + 1.5
    assert effective_rank(z) == pytest.approx(3.0, abs=1e-9)
    # The same after a random rotation: the rank does not depend on the basis.
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=_generator()))
    assert effective_rank(z @ q) == pytest.approx(3.0, abs=1e-6)


def test_effective_rank_matches_the_entropy_formula_for_unequal_spread() -> None:
    # Singular values 2*sqrt(2) and sqrt(2): p = (2/3, 1/3).
    z = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    p = np.array([2 / 3, 1 / 3])
    expected = math.exp(-(p * np.log(p)).sum())  # ~1.8899
    assert effective_rank(z) == pytest.approx(expected, abs=1e-9)


def test_per_dimension_std_matches_numpy_population_std() -> None:
    a = np.array([[1.0, 2.0, -1.0], [3.0, 2.0, 0.5], [0.0, 2.0, 4.0], [7.5, 2.0, -3.0]])
    out = per_dimension_std(torch.tensor(a, dtype=torch.float32))
    assert out.shape == (3,)
    np.testing.assert_allclose(out.numpy(), a.std(axis=0), rtol=1e-6)
    assert out[1].item() == 0.0


def test_collapse_metrics_of_constant_embeddings() -> None:
    z = torch.full((4, 6, 16), 0.3)  # [B, T, D], every vector the same
    m = collapse_metrics(z)
    assert set(m) == {"embedding_std_mean", "embedding_std_min", "effective_rank", "embedding_dim"}
    assert m["embedding_std_mean"] == pytest.approx(0.0, abs=1e-12)
    assert m["embedding_std_min"] == pytest.approx(0.0, abs=1e-12)
    assert m["effective_rank"] == 1.0
    assert m["embedding_dim"] == 16.0
    assert collapse_metrics(torch.zeros(10, 4))["effective_rank"] == 1.0


def test_collapse_metrics_flattens_leading_dims() -> None:
    z = torch.randn(50, 40, 4, generator=_generator()) * torch.tensor([1.0, 2.0, 3.0, 4.0])
    m = collapse_metrics(z)
    assert m["embedding_std_mean"] == pytest.approx(2.5, abs=0.1)
    assert m["embedding_std_min"] == pytest.approx(1.0, abs=0.05)
    assert m["embedding_dim"] == 4.0
    assert 1.0 < m["effective_rank"] < 4.0


def test_probe_recovers_an_exact_linear_map_on_held_out_data() -> None:
    g = _generator()
    a, b = torch.randn(12, 3, generator=g), torch.tensor([1.0, -2.0, 0.5])
    z = torch.randn(600, 12, generator=g) * torch.linspace(0.01, 10.0, 12)  # scales 0.01 to 10
    y = z @ a + b
    r2 = probe_r2(z[:400], y[:400], z[400:], y[400:])
    assert r2 > 0.999
    probe = fit_linear_probe(z[:400], y[:400], ridge=0.0)
    assert isinstance(probe, LinearProbe)
    assert probe.weight.shape == (12, 3) and probe.bias.shape == (3,)
    assert (probe.predict(z[400:]) - y[400:].double()).abs().max().item() < 1e-4


def test_probe_of_independent_noise_scores_near_zero() -> None:
    g = _generator()
    z, y = torch.randn(4000, 8, generator=g), torch.randn(4000, 2, generator=g)
    assert abs(probe_r2(z[:2000], y[:2000], z[2000:], y[2000:])) <= 0.05


def test_probe_survives_constant_and_near_constant_dims() -> None:
    g = _generator()
    signal = torch.randn(300, 2, generator=g)
    z = torch.cat([signal, torch.full((300, 1), 3.0), 1e-13 * torch.randn(300, 1, generator=g)], dim=1)
    y = signal @ torch.tensor([[1.0], [-2.0]])
    probe = fit_linear_probe(z[:200], y[:200])
    assert torch.isfinite(probe.weight).all() and (probe.z_std > 0).all()
    # A held-out embedding that moves along a dim that was constant in training changes nothing.
    shifted = z[200:].clone()
    shifted[:, 2] += 1.0
    assert r2_score(y[200:], probe.predict(shifted)) > 0.999


def test_r2_score_of_mean_and_perfect_predictions() -> None:
    y = torch.randn(50, 3, generator=_generator())
    assert r2_score(y, y) == 1.0
    assert r2_score(y, y.mean(dim=0).expand_as(y)) == pytest.approx(0.0, abs=1e-12)


def test_r2_score_matches_a_hand_computed_value() -> None:
    # Output 0: mean 2, SST 2, SSE 0.25+0+0.25 = 0.5.  Output 1: mean 10, SST 200, SSE 4+1+0 = 5.
    # Pooled: 1 - (0.5 + 5) / (2 + 200) = 1 - 5.5 / 202.
    y_true = torch.tensor([[1.0, 0.0], [2.0, 10.0], [3.0, 20.0]])
    y_pred = torch.tensor([[1.5, 2.0], [2.0, 9.0], [2.5, 20.0]])
    assert r2_score(y_true, y_pred) == pytest.approx(1 - 5.5 / 202, abs=1e-12)
    # 1-D targets: 1 - 0.5 / 2.
    assert r2_score(y_true[:, 0], y_pred[:, 0]) == pytest.approx(0.75, abs=1e-12)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: per_dimension_std(torch.zeros(1, 4)), "at least 2 rows"),
    (lambda: per_dimension_std(torch.zeros(8)), r"matrix \[N, D\]"),
    (lambda: effective_rank(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]])), "NaN or inf"),
    (lambda: collapse_metrics(torch.zeros(5)), "at least 2 dims"),
    (lambda: fit_linear_probe(torch.zeros(5, 3), torch.zeros(4, 2)), "5 and 4 rows"),
    (lambda: fit_linear_probe(torch.randn(5, 3), torch.randn(5, 2), ridge=-1.0), "ridge"),
    (lambda: fit_linear_probe(torch.randn(5, 3), torch.randn(5, 2)).predict(torch.zeros(2, 4)), "4 dims"),
    (lambda: r2_score(torch.zeros(4, 2), torch.zeros(4, 3)), "share a shape"),
    (lambda: r2_score(torch.ones(4, 2), torch.zeros(4, 2)), "constant"),
    (lambda: r2_score(torch.tensor([1.0, float("inf")]), torch.zeros(2)), "NaN or inf"),
    (lambda: probe_r2(torch.randn(5, 3), torch.randn(5, 1), torch.randn(4, 2), torch.randn(4, 1)),
     "test_z has 2 dims"),
    (lambda: probe_r2(torch.randn(5, 3), torch.randn(5, 1), torch.randn(4, 3), torch.randn(3, 1)),
     "test_z and test_y"),
])
def test_bad_inputs_raise_user_input_error(call, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        call()
