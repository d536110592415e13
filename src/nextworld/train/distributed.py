"""Data parallelism under ``torchrun``: process setup, the DDP-wrapped loss, small collectives.

``torchrun --nproc_per_node N -m nextworld ...`` starts N processes with RANK,
WORLD_SIZE and LOCAL_RANK set; :func:`init_distributed` reads them and joins the group
(NCCL on CUDA, gloo on CPU). Without them the run is a single process and every helper
here is a no-op. Small control collectives (stop flags, metrics, RNG states) go through a
gloo group on CPU tensors, so they never wait on the GPU stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nextworld.errors import UserInputError


@dataclass
class DistContext:
    """Where this process sits in the run."""

    rank: int
    world_size: int
    device: torch.device
    control: Any = None
    """The gloo group for control collectives (None when single-process)."""
    owns_group: bool = False
    """Whether this module created the default process group (and so destroys it)."""
    launched_by_torchrun: bool = False
    """torchrun forwards SIGINT/SIGTERM to its workers (and SIGKILLs them 30 s later)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda if available else cpu; bare ``cuda`` -> ``cuda:local_rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserInputError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserInputError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise UserInputError(f"device {name!r}: no such CUDA device on this machine")
    return device


def init_distributed(device_name: str) -> DistContext:
    """Join the process group that torchrun's environment describes, if any.

    Raises:
        UserInputError: an unknown device, or an explicit ``cuda:N`` on several
            processes (each would take that one GPU).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and device_name.startswith("cuda:"):
        raise UserInputError(f"device {device_name!r}: under torchrun use --device cuda or auto; "
                             "each process takes cuda:LOCAL_RANK")
    device = resolve_device(device_name, local_rank)
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ
    if world_size == 1:
        return DistContext(rank=0, world_size=1, device=device, launched_by_torchrun=torchrun)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device,
                       control=control, owns_group=owns, launched_by_torchrun=torchrun)


def close_distributed(ctx: DistContext) -> None:
    """Leave the group if this module joined it (else drop only the control group it made)."""
    if not ctx.parallel or not dist.is_initialized():
        return
    if ctx.owns_group:
        dist.destroy_process_group()
    elif ctx.control is not dist.group.WORLD:
        dist.destroy_process_group(ctx.control)


def barrier(ctx: DistContext) -> None:
    if ctx.parallel:
        dist.barrier(group=ctx.control)


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is True on any (ranks agree to stop together)."""
    if not ctx.parallel:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ctx.control)
    return bool(t.item())


def mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average each value over ranks; every rank must pass the same keys."""
    if not ctx.parallel or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=ctx.control)
    return dict(zip(keys, (t / ctx.world_size).tolist()))


def gather_to_main(tensors: dict[str, torch.Tensor], ctx: DistContext) -> list[dict[str, torch.Tensor]]:
    """Every rank's ``tensors`` (same names and shapes on all ranks), in rank order, on rank 0.

    Other ranks get an empty list.
    """
    if not ctx.parallel:
        return [tensors]
    gathered: list[dict[str, torch.Tensor]] = [{} for _ in range(ctx.world_size)] if ctx.is_main else []
    for name in sorted(tensors):
        t = tensors[name].cpu().contiguous()
        parts = [torch.empty_like(t) for _ in range(ctx.world_size)] if ctx.is_main else None
        dist.gather(t, parts, dst=0, group=ctx.control)
        for rank, part in enumerate(parts or []):
            gathered[rank][name] = part
    return gathered


class LossForward(nn.Module):
    """Makes ``model.loss`` the module's forward, so DistributedDataParallel can wrap it.

    DDP only synchronises gradients of computations that run through its own
    ``forward``; calling ``model.loss`` directly would skip that. The wrapper holds the
    model as ``self.model`` (its parameters are the model's own, not copies).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.model.loss(batch)
