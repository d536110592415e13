"""Model-agnostic planners over action sequences: CEM and MPPI, for continuous and discrete actions.

A planner searches ``horizon`` decisions, each held for ``action_repeat`` model steps, for the
sequence a cost function likes best. The cost function sees every candidate of an iteration in
one call, so a world model can roll them all forward as one batch::

    cost_fn(actions) -> costs [N]      # lower is better, finite
    actions: float32 [N, L, dim] (continuous) or int64 [N, L] (discrete), L = horizon * action_repeat

Both planners keep a distribution over decision sequences -- a Gaussian per (step, dim) for
continuous actions, a categorical per step for discrete ones -- and run ``iterations`` of:

    1. candidates [N, H(, D)]: row 0 is the distribution's centre (the mean, or each step's most
       likely action), rows 1.. are N-1 draws; continuous draws are clipped to [low, high], then
       each step's action rescaled to norm <= max_norm
    2. costs [N] = cost_fn(candidates, each decision repeated action_repeat times)
    3. weights [N]: CEM puts 1/elites on the ``elites`` cheapest candidates; MPPI puts
       softmax(-(c - min c) / (temperature * std c)) on all of them
    4. refit the distribution to the weighted candidates (weighted mean and std, floored at
       min_std; or weighted per-step frequencies, floored at min_prob), blended with the old one
       by ``momentum``

The plan returned is the cheapest candidate ever evaluated. With ``final_eval`` the final
centre is evaluated too, in one extra call with a batch of 1, so a converged mean can win.
Given the ``generator``, everything is deterministic.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from nextworld.errors import UserInputError

CostFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ActionSpec:
    """The action space a planner searches: continuous (dim, low, high, max_norm or None) or discrete (n)."""

    kind: Literal["continuous", "discrete"]
    """continuous: real vectors of ``dim`` numbers; discrete: one integer in [0, n)."""
    dim: int = 0
    """Continuous only: numbers per action."""
    low: float = -1.0
    """Continuous only: lower bound of every dimension."""
    high: float = 1.0
    """Continuous only: upper bound of every dimension."""
    max_norm: float | None = None
    """Continuous only: candidate actions are rescaled to L2 norm <= max_norm (e.g. Two-Rooms 2.45); None: no limit."""
    n: int = 0
    """Discrete only: the number of actions."""

    def __post_init__(self) -> None:
        if self.kind == "continuous":
            if self.dim < 1:
                raise UserInputError(f"action spec dim must be >= 1 for a continuous space, got {self.dim}")
            if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
                raise UserInputError(f"action spec bounds must be finite with low < high, got [{self.low}, {self.high}]")
            if self.max_norm is not None and not self.max_norm > 0:
                raise UserInputError(f"action spec max_norm must be > 0 or None, got {self.max_norm}")
            if self.max_norm is not None and not self.low <= 0 <= self.high:
                # Rescaling towards 0 stays inside the box only when the box holds 0.
                raise UserInputError(
                    f"action spec max_norm needs bounds around 0 (low <= 0 <= high), got [{self.low}, {self.high}]")
        elif self.kind == "discrete":
            if self.n < 1:
                raise UserInputError(f"action spec n must be >= 1 for a discrete space, got {self.n}")
        else:
            raise UserInputError(f"action spec kind must be 'continuous' or 'discrete', got {self.kind!r}")

    @classmethod
    def from_gym(cls, space: gym.Space, max_norm: float | None = None) -> ActionSpec:
        """The spec of a Gymnasium ``Discrete`` (numbered from 0) or 1-D ``Box`` (one bound for all dimensions)."""
        if isinstance(space, gym.spaces.Discrete):
            if int(space.start) != 0:
                raise UserInputError(f"action space {space} starts at {space.start}; planners need actions numbered from 0")
            if max_norm is not None:
                raise UserInputError(f"max_norm applies to continuous action spaces only, got {space}")
            return cls("discrete", n=int(space.n))
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            low, high = np.unique(space.low), np.unique(space.high)
            if low.size != 1 or high.size != 1:
                raise UserInputError(f"action space {space} has different bounds per dimension; planners need one [low, high]")
            return cls("continuous", dim=int(space.shape[0]), low=float(low[0]), high=float(high[0]), max_norm=max_norm)
        raise UserInputError(f"action space {space} is not supported by the planners: need a 1-D Box or a Discrete")

    @property
    def half_range(self) -> float:
        """(high - low) / 2: the unit of the planner's continuous standard deviations."""
        return (self.high - self.low) / 2

    def neutral(self, horizon: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The start with no preference: the zero action clamped into the bounds [horizon, dim], or uniform probs [horizon, n]."""
        if self.kind == "continuous":
            return torch.full((horizon, self.dim), min(max(0.0, self.low), self.high), device=device)
        return torch.full((horizon, self.n), 1.0 / self.n, device=device)


@dataclass
class PlannerConfig:
    """How a planner searches; see the module docstring for the steps of one iteration."""

    name: Literal["cem", "mppi"] = "cem"
    """cem: refit on the elites; mppi: refit on all candidates weighted by softmax of their costs."""
    horizon: int = 16
    """Decisions planned."""
    action_repeat: int = 1
    """Model steps each decision is held for; the cost function receives horizon * action_repeat steps."""
    samples: int = 256
    """Candidate sequences per iteration, the distribution's centre included (so >= 2)."""
    iterations: int = 4
    """Sample-evaluate-refit rounds per plan call."""
    elites: int = 32
    """CEM: the cheapest candidates the distribution is refit on (<= samples); MPPI ignores it."""
    temperature: float = 0.5
    """MPPI: weights are softmax(-(c - min c) / (temperature * std c)) -- costs are divided by their std over
    the candidates, so a candidate one std worse than the best weighs exp(-1 / temperature) times as much."""
    init_std: float = 1.0
    """Continuous: the standard deviation each plan call starts from, in units of (high - low) / 2."""
    min_std: float = 0.05
    """Continuous: the floor of the refit standard deviation, in units of (high - low) / 2."""
    momentum: float = 0.0
    """Smoothing of the update: new = momentum * old + (1 - momentum) * refit; in [0, 1)."""
    min_prob: float = 1e-3
    """Discrete: the floor of every action's probability at every step, so none is ever ruled out; < 1 / n."""
    final_eval: bool = True
    """Evaluate the final distribution's centre in one extra cost_fn call (batch of 1) so it can be returned;
    False saves that call, and the plan is the best of the iterations' candidates."""
    device: str = "cpu"
    """Where candidates and the distribution live; the cost function receives tensors on this device."""

    def check(self) -> None:
        """Raise UserInputError for values no planner can use."""
        for name in ("horizon", "action_repeat", "iterations", "elites"):
            if getattr(self, name) < 1:
                raise UserInputError(f"planner.{name} must be >= 1, got {getattr(self, name)}")
        if self.samples < 2:
            raise UserInputError(f"planner.samples must be >= 2 (one candidate is the distribution's centre), got {self.samples}")
        if self.elites > self.samples:
            raise UserInputError(f"planner.elites ({self.elites}) must be <= planner.samples ({self.samples})")
        if not self.temperature > 0:
            raise UserInputError(f"planner.temperature must be > 0, got {self.temperature}")
        if not self.init_std > 0:
            raise UserInputError(f"planner.init_std must be > 0, got {self.init_std}")
        if not self.min_std >= 0:
            raise UserInputError(f"planner.min_std must be >= 0, got {self.min_std}")
        if not 0 <= self.momentum < 1:
            raise UserInputError(f"planner.momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.min_prob < 1:
            raise UserInputError(f"planner.min_prob must be in (0, 1), got {self.min_prob}")


@dataclass
class PlanResult:
    """What one ``Planner.plan`` call found."""

    actions: torch.Tensor
    """The best plan, expanded: [horizon * action_repeat, dim] float32 or [horizon * action_repeat] int64."""
    decisions: torch.Tensor
    """The best plan, one entry per decision: [horizon, dim] or [horizon]."""
    cost: float
    """The cost of the returned plan."""
    mean: torch.Tensor
    """The final distribution, for a warm start: continuous mean [horizon, dim]; discrete probs [horizon, n]."""
    costs_per_iteration: list[float]
    """The cheapest cost in each iteration's batch (the final_eval call not included)."""


class Planner(ABC):
    """Searches action sequences for the lowest cost; subclasses say how candidates are weighted."""

    def __init__(self, cfg: PlannerConfig, spec: ActionSpec) -> None:
        cfg.check()
        if spec.kind == "discrete" and cfg.min_prob * spec.n >= 1:
            raise UserInputError(f"planner.min_prob must be < 1 / n = {1 / spec.n:.4g} for {spec.n} actions, got {cfg.min_prob}")
        self.cfg = cfg
        self.spec = spec
        self.device = torch.device(cfg.device)

    @abstractmethod
    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        """Weights [N] >= 0 summing to 1 that the distribution is refit with, from costs [N]."""

    def plan(self, cost_fn: CostFn, *, init: torch.Tensor | None = None,
             generator: torch.Generator | None = None, iterations: int | None = None) -> PlanResult:
        """Search for the cheapest action sequence.

        Args:
            cost_fn: actions [N, L, dim] float32 or [N, L] int64 -> costs [N]; called once per iteration
                (plus once with N = 1 when ``final_eval``).
            init: a warm start: the mean [horizon, dim] (continuous, clamped into the bounds) or
                probabilities [horizon, n] (discrete; floored at min_prob), e.g. the previous plan shifted.
                None starts from ``spec.neutral``. The continuous std always starts at ``init_std``.
            generator: the source of all randomness (on ``cfg.device``); None uses torch's global one.
            iterations: this call's iterations instead of ``cfg.iterations`` (e.g. more for a cold start).
        """
        centre, std = self._start(init)
        best_cost, best = math.inf, None
        costs_per_iteration: list[float] = []
        if iterations is not None and iterations < 1:
            raise UserInputError(f"iterations must be >= 1, got {iterations}")
        for _ in range(self.cfg.iterations if iterations is None else iterations):
            candidates = self._candidates(centre, std, generator)  # [N, H, D] or [N, H]
            costs = self._evaluate(cost_fn, candidates)  # [N]
            i = int(costs.argmin())
            costs_per_iteration.append(float(costs[i]))
            if best is None or costs_per_iteration[-1] < best_cost:
                best_cost, best = costs_per_iteration[-1], candidates[i]
            centre, std = self._refit(candidates, self.weights(costs), centre, std)
        if self.cfg.final_eval:
            final = self._centre(centre)[None]
            cost = float(self._evaluate(cost_fn, final)[0])
            if cost < best_cost:
                best_cost, best = cost, final[0]
        return PlanResult(actions=self._expand(best[None])[0], decisions=best, cost=best_cost, mean=centre,
                          costs_per_iteration=costs_per_iteration)

    # ------------------------------------------------------------------ the distribution

    def _start(self, init: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean [H, D], std [H, D]) or (probs [H, n], None) to start from."""
        spec, horizon = self.spec, self.cfg.horizon
        if init is None:
            init = spec.neutral(horizon, self.device)
        width = spec.dim if spec.kind == "continuous" else spec.n
        if tuple(init.shape) != (horizon, width):
            what = "dim" if spec.kind == "continuous" else "n"
            raise UserInputError(f"planner init must have shape [{horizon}, {width}] (horizon, {what}), got {list(init.shape)}")
        init = init.detach().to(self.device, torch.float32)
        if spec.kind == "continuous":
            std = torch.full_like(init, self.cfg.init_std * spec.half_range)
            return init.clamp(spec.low, spec.high), std
        if (init < 0).any() or not torch.allclose(init.sum(-1), torch.ones(horizon, device=self.device), atol=1e-3):
            raise UserInputError("planner init for discrete actions must hold probabilities (rows >= 0 summing to 1); "
                                 "pass logits.softmax(-1) for logits")
        return self._floor(init), None

    def _centre(self, centre: torch.Tensor) -> torch.Tensor:
        """The distribution's most likely sequence: the projected mean [H, D] or each step's argmax [H]."""
        if self.spec.kind == "continuous":
            return self._project(centre)
        return centre.argmax(-1)

    def _candidates(self, centre: torch.Tensor, std: torch.Tensor | None,
                    generator: torch.Generator | None) -> torch.Tensor:
        """The centre and samples - 1 draws: [N, H, D] float32 or [N, H] int64."""
        draws = self.cfg.samples - 1
        if self.spec.kind == "continuous":
            noise = torch.randn((draws, *centre.shape), generator=generator, device=self.device)  # [N-1, H, D]
            sampled = self._project(centre + std * noise)
        else:
            sampled = torch.multinomial(centre, draws, replacement=True, generator=generator).T  # [N-1, H]
        return torch.cat([self._centre(centre)[None], sampled])

    def _project(self, actions: torch.Tensor) -> torch.Tensor:
        """Clip [..., D] to the bounds, then rescale each action to norm <= max_norm."""
        actions = actions.clamp(self.spec.low, self.spec.high)
        if self.spec.max_norm is not None:
            norm = actions.norm(dim=-1, keepdim=True)  # [..., 1]
            actions = actions * (self.spec.max_norm / norm.clamp_min(1e-12)).clamp(max=1.0)
        return actions

    def _refit(self, candidates: torch.Tensor, weights: torch.Tensor, centre: torch.Tensor,
               std: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.cfg.momentum
        if self.spec.kind == "continuous":
            mean = torch.einsum("n,nhd->hd", weights, candidates)
            var = torch.einsum("n,nhd->hd", weights, (candidates - mean).square())
            new_mean = m * centre + (1 - m) * mean
            new_std = m * std + (1 - m) * var.sqrt()
            return new_mean, new_std.clamp_min(self.cfg.min_std * self.spec.half_range)
        onehot = F.one_hot(candidates, self.spec.n).to(weights.dtype)  # [N, H, n]
        freq = torch.einsum("n,nhk->hk", weights, onehot)
        return self._floor(m * centre + (1 - m) * freq), None

    def _floor(self, probs: torch.Tensor) -> torch.Tensor:
        """Mix probs [H, n] with the uniform so every entry is >= min_prob and rows still sum to 1."""
        return self.cfg.min_prob + (1 - self.spec.n * self.cfg.min_prob) * probs

    # ------------------------------------------------------------------ evaluation

    def _expand(self, decisions: torch.Tensor) -> torch.Tensor:
        """[N, H(, D)] -> [N, H * action_repeat(, D)], each decision held action_repeat steps."""
        return decisions.repeat_interleave(self.cfg.action_repeat, dim=1)

    def _evaluate(self, cost_fn: CostFn, candidates: torch.Tensor) -> torch.Tensor:
        costs = cost_fn(self._expand(candidates))
        if not isinstance(costs, torch.Tensor) or tuple(costs.shape) != (len(candidates),):
            got = list(costs.shape) if isinstance(costs, torch.Tensor) else type(costs).__name__
            raise ValueError(f"cost_fn must return costs of shape [{len(candidates)}], got {got}")
        costs = costs.detach().to(self.device, torch.float32)
        if not torch.isfinite(costs).all():
            raise ValueError("cost_fn returned a NaN or infinite cost; costs must be finite")
        return costs


class CEM(Planner):
    """Cross-entropy method: refit the distribution on the ``elites`` cheapest candidates, equally weighted."""

    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        # A stable sort makes ties go to the lower index (the centre first), on any device.
        elites = torch.argsort(costs, stable=True)[: self.cfg.elites]
        weights = torch.zeros_like(costs)
        weights[elites] = 1.0 / self.cfg.elites
        return weights


class MPPI(Planner):
    """Model predictive path integral: refit on all candidates, weighted by softmax(-cost / temperature)."""

    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        # Costs are shifted by their minimum and divided by their std, so the temperature means the
        # same whatever the scale of the cost function; equal costs give equal weights.
        scale = costs.std(unbiased=False).clamp_min(1e-12)
        return torch.softmax(-(costs - costs.min()) / (self.cfg.temperature * scale), dim=0)


def make_planner(cfg: PlannerConfig, spec: ActionSpec) -> Planner:
    """The planner ``cfg.name`` names, for actions of ``spec``."""
    planners: dict[str, type[Planner]] = {"cem": CEM, "mppi": MPPI}
    if cfg.name not in planners:
        raise UserInputError(f"unknown planner {cfg.name!r}; known: {', '.join(planners)}")
    return planners[cfg.name](cfg, spec)
