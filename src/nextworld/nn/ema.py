"""Exponential moving averages of a network: the target encoder of BYOL, I-JEPA and V-JEPA.

A joint-embedding model fits its predictions to the features of a *target* encoder that no
gradient reaches; the target follows the trained (*online*) encoder slowly, after every
optimizer step::

    target <- decay * target + (1 - decay) * online

``decay`` itself rises over training (``ema_decay``): early on the target keeps up with
a fast-changing encoder, at the end it barely moves, and the features settle.

Usage::

    target = make_target(online)             # once, at construction
    ...optimizer.step()...
    ema_update(target, online, ema_decay(step, total_steps))
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_target(online: nn.Module) -> nn.Module:
    """A copy of ``online`` to serve as its EMA target: same weights, ``requires_grad`` False on all parameters."""
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    """Move ``target`` towards ``online`` in place: ``t <- decay * t + (1 - decay) * o``.

    Applies to every parameter and every floating-point buffer (e.g. a norm's running
    statistics), matched by name; integer buffers (counters) are copied from ``online``.
    ``decay`` 1 leaves the target as it is, 0 copies the online network.

    Raises:
        ValueError: ``decay`` outside [0, 1], or the two modules have different parameter
            or buffer names (the target was not made from this online network).
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
    for kind, t_items, o_items in (("parameters", target.named_parameters(), online.named_parameters()),
                                   ("buffers", target.named_buffers(), online.named_buffers())):
        t_dict, o_dict = dict(t_items), dict(o_items)
        if t_dict.keys() != o_dict.keys():
            raise ValueError(f"EMA target and online network have different {kind}: "
                             f"{sorted(t_dict.keys() ^ o_dict.keys())[:3]}")
        t_float = [t for name, t in t_dict.items() if t.is_floating_point()]
        o_float = [o_dict[name] for name, t in t_dict.items() if t.is_floating_point()]
        if t_float:
            torch._foreach_lerp_(t_float, o_float, 1.0 - decay)  # t + (1 - decay) * (o - t)
        for name, t in t_dict.items():
            if not t.is_floating_point():
                t.copy_(o_dict[name])


def ema_decay(step: int, total_steps: int, start: float = 0.996, end: float = 1.0) -> float:
    """The EMA decay after optimizer step ``step`` (from 0) of ``total_steps``.

    I-JEPA's and V-JEPA's schedule: linear from ``start`` at the first step to ``end`` at
    the last (``step = total_steps - 1``), so with the defaults the target moves by 0.4 % of
    the gap at first and not at all at the end. Steps past the end keep ``end``. (I-JEPA
    stretches the ramp by 1.25 so it stops short of ``end``; pass a lower ``end`` for that.)

    Raises:
        ValueError: ``total_steps`` < 1 or a negative ``step``.
    """
    if total_steps < 1:
        raise ValueError(f"EMA schedule needs total_steps >= 1, got {total_steps}")
    if step < 0:
        raise ValueError(f"EMA schedule needs step >= 0, got {step}")
    progress = min(1.0, step / max(1, total_steps - 1))
    return start + (end - start) * progress
