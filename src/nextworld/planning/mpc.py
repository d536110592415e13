"""Receding-horizon control (MPC) around a planner: plan, execute the start of the plan, replan.

Each plan call is warm-started from the previous plan shifted left by the decisions already
executed, padded at the end with the spec's neutral start (the zero action / uniform probs):

    plan 1:   d0 d1 d2 d3          execute d0 (action_repeat env steps each)
    plan 2:   d1 d2 d3 ·  <- init  (· = neutral)

Continuous warm starts shift the best plan's decisions (the planner re-evaluates them as its
first candidate, so a good plan is never lost); discrete ones shift the final probabilities,
because a one-hot of the decisions would leave only min_prob of exploration at every step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from nextworld.errors import UserInputError
from nextworld.planning.planners import CostFn, Planner, PlanResult


@dataclass
class MPCConfig:
    """How often MPC replans."""

    replan_every: int = 1
    """Env steps executed from each plan before replanning, rounded up to whole decisions (a multiple of the
    planner's action_repeat) so a held action is never cut short; at most horizon * action_repeat."""
    first_iterations: int | None = None
    """Planner iterations of an episode's first plan, which has no warm start (None: the planner's own)."""

    def check(self, horizon: int, action_repeat: int) -> None:
        """Raise UserInputError unless a plan of ``horizon`` decisions x ``action_repeat`` steps can serve replan_every."""
        if self.replan_every < 1:
            raise UserInputError(f"mpc.replan_every must be >= 1, got {self.replan_every}")
        if self.first_iterations is not None and self.first_iterations < 1:
            raise UserInputError(f"mpc.first_iterations must be >= 1 or None, got {self.first_iterations}")
        if self.replan_every > horizon * action_repeat:
            raise UserInputError(f"mpc.replan_every ({self.replan_every}) must be <= planner.horizon x "
                                 f"planner.action_repeat = {horizon * action_repeat}, the steps one plan holds")


class MPC:
    """Receding-horizon control: plan, execute the first replan_every actions, shift the plan's decisions
    left as the next warm start (pad with the spec's neutral start: zeros / uniform), replan."""

    def __init__(self, planner: Planner, cfg: MPCConfig) -> None:
        repeat = planner.cfg.action_repeat
        cfg.check(planner.cfg.horizon, repeat)
        self.planner = planner
        self.cfg = cfg
        self.decisions_per_plan = math.ceil(cfg.replan_every / repeat)
        """Decisions executed from each plan (and shifted out of the warm start)."""
        self.steps_per_plan = self.decisions_per_plan * repeat
        """Env steps executed from each plan: replan_every rounded up to a multiple of action_repeat."""
        self.plan_seconds: list[float] = []
        """Wall time of each planner call over this MPC's lifetime (reset keeps it)."""
        self.last_plan: PlanResult | None = None
        """The latest planner result, for diagnostics."""
        self.reset()

    def reset(self) -> None:
        """Forget the queued actions and the warm start, e.g. at the start of an episode."""
        self._queue: torch.Tensor | None = None  # [steps_per_plan, dim] or [steps_per_plan]
        self._next = 0
        self._warm: torch.Tensor | None = None  # [horizon, dim] mean or [horizon, n] probs

    def act(self, cost_fn: CostFn, generator: torch.Generator | None = None) -> torch.Tensor:
        """The next single action: float32 [dim] or an int64 scalar.

        Plans (timed into ``plan_seconds``) only when the queue of planned actions is empty;
        ``cost_fn`` should score sequences from the current state, since that is when it is called.
        """
        if self._queue is None or self._next == len(self._queue):
            start = time.perf_counter()
            cold = self._warm is None and self.cfg.first_iterations is not None
            result = self.planner.plan(cost_fn, init=self._warm, generator=generator,
                                       iterations=self.cfg.first_iterations if cold else None)
            self.plan_seconds.append(time.perf_counter() - start)
            self.last_plan = result
            self._queue, self._next = result.actions[: self.steps_per_plan], 0
            self._warm = self._shift(result)
        action = self._queue[self._next]
        self._next += 1
        return action

    def _shift(self, result: PlanResult) -> torch.Tensor:
        """The next warm start: the executed decisions dropped, the neutral start appended."""
        spec, d = self.planner.spec, self.decisions_per_plan
        kept = result.decisions if spec.kind == "continuous" else result.mean  # [H, dim] or [H, n]
        return torch.cat([kept[d:], spec.neutral(d, kept.device)])
