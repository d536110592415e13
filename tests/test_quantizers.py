"""Quantizers: shapes, straight-through gradients, dead-code restarts, FSQ index <-> code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from nextworld.nn.quantizers import FSQ, VectorQuantizer


def make(kind: str) -> VectorQuantizer | FSQ:
    return VectorQuantizer(num_codes=16, code_dim=4) if kind == "vq" else FSQ([4, 3, 5, 2])


@pytest.mark.parametrize("kind", ["vq", "fsq"])
def test_shapes_and_codes_match_indices(kind: str) -> None:
    torch.manual_seed(0)
    q = make(kind).eval()
    z = torch.randn(2, 3, 5, 4)
    out = q(z)
    assert out.z.shape == z.shape
    assert out.indices.shape == (2, 3, 5) and out.indices.dtype == torch.int64
    assert 0 <= int(out.indices.min()) and int(out.indices.max()) < q.num_codes
    assert out.loss.shape == ()
    torch.testing.assert_close(out.z, q.indices_to_codes(out.indices))
    assert set(out.metrics) == {"codebook_usage", "perplexity"}


@pytest.mark.parametrize("kind", ["vq", "fsq"])
def test_straight_through_gradient_reaches_encoder(kind: str) -> None:
    torch.manual_seed(0)
    q = make(kind).train()
    encoder = torch.nn.Linear(6, 4)
    out = q(encoder(torch.randn(32, 6)))
    (out.z * torch.randn_like(out.z)).sum().backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0


def test_vq_picks_the_nearest_code_by_cosine() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=16, code_dim=4).eval()
    z = torch.randn(100, 4)
    cos = F.normalize(z, dim=-1) @ F.normalize(q.codebook, dim=-1).T
    assert torch.equal(q(z).indices, cos.argmax(dim=-1))


def test_vq_loss_trains_the_codebook() -> None:
    q = VectorQuantizer(num_codes=16, code_dim=4).eval()
    q(torch.randn(32, 4)).loss.backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0


def test_first_training_step_initialises_codebook_from_data() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=16, code_dim=4).train()
    z = torch.randn(64, 4)
    q(z)
    # every code is now one of the (normalised) latents of the batch
    cos = F.normalize(q.codebook, dim=-1) @ F.normalize(z, dim=-1).T  # (K, N)
    assert torch.allclose(cos.max(dim=1).values, torch.ones(16))


def test_dead_codes_are_restarted_and_live_codes_kept() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=16, code_dim=4, restart_threshold=0.5, usage_decay=0.5).train()
    q.usage.fill_(1 / 16)  # all codes start alive
    live = torch.tensor([0, 1, 2])
    # A batch whose latents sit on codes 0-2 only: codes 3-15 go unused.
    z = F.normalize(q.codebook.detach(), dim=-1)[live].repeat(20, 1) + 0.01 * torch.randn(60, 4)
    before = q.codebook.detach().clone()
    out = q(z)
    assert set(out.indices.tolist()) == {0, 1, 2}
    assert out.metrics["codebook_usage"] == pytest.approx(3 / 16)
    q(z)
    torch.testing.assert_close(q.codebook.detach(), before)  # unused for two steps only: not dead yet
    out = q(z)  # their usage share is now 1/4 of uniform, below the threshold of 1/2
    after = q.codebook.detach()
    torch.testing.assert_close(after[live], before[live])
    dead = torch.ones(16, dtype=torch.bool)
    dead[live] = False
    assert not torch.isclose(after[dead], before[dead]).all(dim=1).any()
    cos = F.normalize(after[dead], dim=-1) @ F.normalize(z, dim=-1).T
    assert torch.allclose(cos.max(dim=1).values, torch.ones(13))  # revived from batch latents
    assert out.metrics["codebook_usage"] > 3 / 16  # and the batch now spreads over them


def test_vq_never_changes_outside_training_steps() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=16, code_dim=4)
    before = q.codebook.detach().clone()
    q.eval()(torch.randn(64, 4))
    with torch.no_grad():
        q.train()(torch.randn(64, 4))
    torch.testing.assert_close(q.codebook.detach(), before)
    assert q.usage.sum() == 0


def test_fsq_code_count_and_index_code_round_trip() -> None:
    q = FSQ([8, 5, 5, 5])
    assert q.num_codes == 1000 and q.code_dim == 4
    indices = torch.arange(1000)
    codes = q.indices_to_codes(indices)
    assert codes.shape == (1000, 4)
    assert codes.min() >= -1 and codes.max() <= 1
    assert len(torch.unique(codes, dim=0)) == 1000
    assert torch.equal(q.codes_to_indices(codes), indices)


def test_fsq_reaches_every_level_of_every_dimension() -> None:
    torch.manual_seed(0)
    q = FSQ([8, 5, 2])
    out = q(4 * torch.randn(4096, 3))
    for d, n in enumerate([8, 5, 2]):
        assert len(torch.unique(out.z[:, d])) == n
    assert out.loss == 0


def test_batch_metrics_on_a_collapsed_batch() -> None:
    q = FSQ([4, 4])
    out = q(torch.zeros(10, 2))
    assert out.metrics["codebook_usage"] == pytest.approx(1 / 16)
    assert out.metrics["perplexity"] == pytest.approx(1.0)


def _restart_on_one_of_two_processes(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(rank)  # a different initial codebook, batch and RNG on each process
    q = VectorQuantizer(num_codes=16, code_dim=4).train()
    for _ in range(3):
        q(torch.randn(32, 4))
    np.save(f"{out_dir}/codebook{rank}.npy", q.codebook.detach().numpy())
    np.save(f"{out_dir}/usage{rank}.npy", q.usage.numpy())
    dist.destroy_process_group()


def test_restarts_keep_processes_in_agreement(tmp_path: Path) -> None:
    mp.spawn(_restart_on_one_of_two_processes, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    assert np.array_equal(np.load(tmp_path / "codebook0.npy"), np.load(tmp_path / "codebook1.npy"))
    assert np.array_equal(np.load(tmp_path / "usage0.npy"), np.load(tmp_path / "usage1.npy"))
