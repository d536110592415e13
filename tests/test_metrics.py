"""Metric definitions: PSNR, SSIM and codebook usage."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nextworld.eval.metrics import SSIM_C1, SSIM_C2, codebook_usage, psnr, ssim


def test_psnr_of_identical_frames_is_capped_at_100_db() -> None:
    x = torch.rand(3, 3, 8, 8)
    torch.testing.assert_close(psnr(x, x), torch.full((3,), 100.0))


def test_psnr_matches_known_mse_per_frame() -> None:
    target = torch.zeros(2, 3, 3, 8, 8)
    pred = target.clone()
    pred[0, 1] += 0.1  # MSE 0.01 -> 20 dB
    pred[1, 2] += 0.5  # MSE 0.25
    out = psnr(pred, target)
    assert out.shape == (2, 3)
    assert out[0, 1].item() == pytest.approx(20.0, abs=1e-4)
    assert out[1, 2].item() == pytest.approx(10 * math.log10(1 / 0.25), abs=1e-4)
    assert out[0, 0].item() == pytest.approx(100.0)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="share a shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 7))


def test_ssim_of_identical_frames_is_one_and_falls_with_noise() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(ssim(x, x), torch.ones(4))
    mild = ssim((x + 0.05 * torch.randn_like(x)).clamp(0, 1), x)
    strong = ssim((x + 0.3 * torch.randn_like(x)).clamp(0, 1), x)
    assert (mild < 1).all() and (strong < mild).all()


def test_ssim_of_flat_frames_uses_the_standard_constants() -> None:
    # Flat frames have no variance, so SSIM reduces to the luminance term.
    a, b = 0.2, 0.6
    out = ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert out.item() == pytest.approx((2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1), rel=1e-4)


def test_ssim_matches_a_direct_windowed_computation() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    g = torch.exp(-(torch.arange(11.0) - 5) ** 2 / (2 * 1.5 ** 2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2).flatten()  # (121,)
    px, py = F.unfold(x, 11), F.unfold(y, 11)  # (N, 121, 4): the 2x2 valid windows
    mx, my = (w[:, None] * px).sum(1), (w[:, None] * py).sum(1)
    vx = (w[:, None] * (px - mx[:, None]) ** 2).sum(1)
    vy = (w[:, None] * (py - my[:, None]) ** 2).sum(1)
    cxy = (w[:, None] * (px - mx[:, None]) * (py - my[:, None])).sum(1)
    s = (2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2) / ((mx ** 2 + my ** 2 + SSIM_C1) * (vx + vy + SSIM_C2))
    torch.testing.assert_close(ssim(x, y), s.mean(dim=1), rtol=1e-4, atol=1e-5)


def test_ssim_rejects_frames_smaller_than_the_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_codebook_usage_is_the_fraction_of_codes_seen() -> None:
    assert codebook_usage(torch.tensor([[0, 0], [1, 3]]), 8).item() == pytest.approx(3 / 8)
    assert codebook_usage(torch.arange(8), 8).item() == 1.0
