"""Planners and MPC on toy costs whose answers are known: optima found, bounds kept, determinism, warm starts."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from nextworld.errors import UserInputError
from nextworld.planning import MPC, ActionSpec, MPCConfig, PlannerConfig, PlanResult, make_planner

PLANNERS = ["cem", "mppi"]
CONTINUOUS = ActionSpec("continuous", dim=2)
DISCRETE = ActionSpec("discrete", n=5)
BEST_SEQUENCE = torch.tensor([3, 1, 0, 4, 2, 1])


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fixed_target(horizon: int, dim: int = 2) -> torch.Tensor:
    """A sequence [horizon, dim] well inside the bounds [-1, 1]."""
    return torch.rand(horizon, dim, generator=seeded(123)) * 1.6 - 0.8


def quadratic_cost(target: torch.Tensor):
    def cost(actions: torch.Tensor) -> torch.Tensor:  # [N, L, D] -> [N]
        return (actions - target).square().sum((1, 2))
    return cost


def mismatch_cost(actions: torch.Tensor) -> torch.Tensor:  # [N, L] -> [N]
    return (actions != BEST_SEQUENCE).sum(1).float()


def point_mass_cost(start: torch.Tensor, goal: torch.Tensor, dt: float, mean_over_path: bool = False):
    """Actions are velocities: position_t = start + dt * sum of actions up to t."""
    def cost(actions: torch.Tensor) -> torch.Tensor:  # [N, L, 2] -> [N]
        path = start + dt * actions.cumsum(1)  # [N, L, 2]
        distance = (path - goal).norm(dim=-1)  # [N, L]
        return distance.mean(1) if mean_over_path else distance[:, -1]
    return cost


class Recorder:
    """Wraps a cost function and keeps every batch of actions it was given."""

    def __init__(self, cost_fn) -> None:
        self.cost_fn = cost_fn
        self.inputs: list[torch.Tensor] = []

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        self.inputs.append(actions.clone())
        return self.cost_fn(actions)


# ---------------------------------------------------------------------------- continuous


@pytest.mark.parametrize("name", PLANNERS)
def test_continuous_planner_finds_the_known_optimum(name: str) -> None:
    target = fixed_target(8)
    cost = quadratic_cost(target)
    cfg = PlannerConfig(name=name, horizon=8, samples=128, iterations=15, elites=16, min_std=0.01)
    result = make_planner(cfg, CONTINUOUS).plan(cost, generator=seeded())
    assert result.decisions.shape == (8, 2) and result.decisions.dtype == torch.float32
    assert (result.decisions - target).abs().max() < 0.05
    assert result.cost == pytest.approx(float(cost(result.actions[None])[0]), abs=1e-6)
    assert result.costs_per_iteration[-1] < 0.01 * result.costs_per_iteration[0]
    assert result.mean.shape == (8, 2)


@pytest.mark.parametrize("name", PLANNERS)
def test_action_repeat_holds_each_decision(name: str) -> None:
    target = fixed_target(4).repeat_interleave(3, dim=0)  # [12, 2], constant over each held decision
    recorder = Recorder(quadratic_cost(target))
    cfg = PlannerConfig(name=name, horizon=4, action_repeat=3, samples=64, iterations=12, elites=8, min_std=0.01)
    result = make_planner(cfg, CONTINUOUS).plan(recorder, generator=seeded())
    assert all(x.shape[1:] == (12, 2) for x in recorder.inputs)
    assert torch.equal(recorder.inputs[0][:, 0::3], recorder.inputs[0][:, 2::3])
    assert result.decisions.shape == (4, 2) and result.actions.shape == (12, 2)
    assert torch.equal(result.actions, result.decisions.repeat_interleave(3, dim=0))
    assert (result.actions - target).abs().max() < 0.05


@pytest.mark.parametrize("name", PLANNERS)
def test_every_candidate_respects_bounds_and_max_norm(name: str) -> None:
    spec = ActionSpec("continuous", dim=2, low=-1.0, high=1.0, max_norm=0.5)
    target = torch.tensor([0.9, -0.9]).expand(6, 2)  # outside the norm ball: the best plan sits on its edge
    recorder = Recorder(quadratic_cost(target))
    cfg = PlannerConfig(name=name, horizon=6, samples=64, iterations=12, elites=8, init_std=2.0)
    result = make_planner(cfg, spec).plan(recorder, generator=seeded())
    evaluated = torch.cat([x.reshape(-1, 2) for x in recorder.inputs])  # every action of every candidate
    norms = evaluated.norm(dim=-1)
    assert norms.max() <= 0.5 + 1e-5
    assert (norms > 0.5 - 1e-4).float().mean() > 0.3  # rescaling happened, not merely never needed
    assert evaluated.min() >= -1.0 and evaluated.max() <= 1.0
    # The best reachable plan is the ball's edge towards the target, ||(0.9, -0.9)|| - 0.5 away at each step.
    optimum = 6 * (0.9 * math.sqrt(2) - 0.5) ** 2
    assert optimum <= result.cost < optimum + 0.1
    assert result.decisions.norm(dim=-1).min() > 0.45


@pytest.mark.parametrize("name", PLANNERS)
def test_point_mass_plan_reaches_the_goal(name: str) -> None:
    start, goal, dt = torch.tensor([0.0, 0.0]), torch.tensor([1.5, -1.0]), 0.25
    cost = point_mass_cost(start, goal, dt)
    cfg = PlannerConfig(name=name, horizon=10, samples=128, iterations=10, elites=16)
    result = make_planner(cfg, CONTINUOUS).plan(cost, generator=seeded())
    final = start + dt * result.actions.sum(0)
    assert (final - goal).norm() < 0.05
    assert result.cost == pytest.approx(float((final - goal).norm()), abs=1e-5)


# ---------------------------------------------------------------------------- discrete


@pytest.mark.parametrize("name", PLANNERS)
def test_categorical_planner_recovers_the_best_sequence(name: str) -> None:
    cfg = PlannerConfig(name=name, horizon=6, samples=64, iterations=8, elites=8, min_prob=0.01)
    result = make_planner(cfg, DISCRETE).plan(mismatch_cost, generator=seeded())
    assert result.decisions.dtype == torch.int64
    assert torch.equal(result.decisions, BEST_SEQUENCE)
    assert result.cost == 0.0
    assert result.costs_per_iteration[0] > 0  # a random start is not already optimal
    assert torch.equal(result.mean.argmax(-1), BEST_SEQUENCE)
    assert result.mean.min() >= 0.01 - 1e-6
    torch.testing.assert_close(result.mean.sum(-1), torch.ones(6))


@pytest.mark.parametrize("name", PLANNERS)
def test_categorical_action_repeat_expands_integer_actions(name: str) -> None:
    recorder = Recorder(lambda a: (a[:, ::2] != BEST_SEQUENCE).sum(1).float())
    cfg = PlannerConfig(name=name, horizon=6, action_repeat=2, samples=64, iterations=8, elites=8, min_prob=0.01)
    result = make_planner(cfg, DISCRETE).plan(recorder, generator=seeded())
    assert recorder.inputs[0].shape == (64, 12) and recorder.inputs[0].dtype == torch.int64
    assert torch.equal(result.actions, BEST_SEQUENCE.repeat_interleave(2))


# ---------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("spec", [CONTINUOUS, DISCRETE], ids=["continuous", "discrete"])
@pytest.mark.parametrize("name", PLANNERS)
def test_deterministic_given_the_generator(name: str, spec: ActionSpec) -> None:
    cost = quadratic_cost(fixed_target(6)) if spec.kind == "continuous" else mismatch_cost
    planner = make_planner(PlannerConfig(name=name, horizon=6, samples=32, iterations=3, elites=4), spec)

    def run(seed: int) -> tuple[PlanResult, list[torch.Tensor]]:
        recorder = Recorder(cost)
        return planner.plan(recorder, generator=seeded(seed)), recorder.inputs

    (a, inputs_a), (b, inputs_b), (_, inputs_c) = run(7), run(7), run(8)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.mean, b.mean)
    assert a.costs_per_iteration == b.costs_per_iteration
    assert all(torch.equal(x, y) for x, y in zip(inputs_a, inputs_b, strict=True))
    assert not torch.equal(inputs_a[0], inputs_c[0])


@pytest.mark.parametrize("final_eval", [True, False])
@pytest.mark.parametrize("name", PLANNERS)
def test_one_batched_cost_call_per_iteration(name: str, final_eval: bool) -> None:
    recorder = Recorder(quadratic_cost(fixed_target(5)))
    cfg = PlannerConfig(name=name, horizon=5, samples=40, iterations=3, elites=5, final_eval=final_eval)
    make_planner(cfg, CONTINUOUS).plan(recorder, generator=seeded())
    assert [len(x) for x in recorder.inputs] == [40, 40, 40] + ([1] if final_eval else [])


@pytest.mark.parametrize("name", PLANNERS)
def test_warm_start_at_the_optimum_is_kept(name: str) -> None:
    target = fixed_target(8)
    cfg = PlannerConfig(name=name, horizon=8, samples=32, iterations=2, elites=4)
    cold = make_planner(cfg, CONTINUOUS).plan(quadratic_cost(target), generator=seeded())
    warm = make_planner(cfg, CONTINUOUS).plan(quadratic_cost(target), init=target, generator=seeded())
    assert cold.costs_per_iteration[0] > 1.0
    assert warm.costs_per_iteration[0] < 1e-10 and warm.cost < 1e-10
    torch.testing.assert_close(warm.decisions, target)

    probs = torch.nn.functional.one_hot(BEST_SEQUENCE, 5).float()
    discrete = make_planner(PlannerConfig(name=name, horizon=6, samples=8, iterations=1, elites=2), DISCRETE)
    result = discrete.plan(mismatch_cost, init=probs, generator=seeded())
    assert result.costs_per_iteration == [0.0] and torch.equal(result.decisions, BEST_SEQUENCE)


# ---------------------------------------------------------------------------- MPC


class CountingPlanner:
    """Wraps a planner's ``plan`` to count its calls and keep the warm starts it was given."""

    def __init__(self, planner) -> None:
        self.planner, self.inits, self.results = planner, [], []
        self.original = planner.plan
        planner.plan = self

    def __call__(self, cost_fn, *, init=None, generator=None, iterations=None) -> PlanResult:
        self.inits.append(None if init is None else init.clone())
        self.results.append(self.original(cost_fn, init=init, generator=generator, iterations=iterations))
        return self.results[-1]


@pytest.mark.parametrize("name", PLANNERS)
def test_mpc_drives_a_point_mass_to_the_goal(name: str) -> None:
    goal, dt = torch.tensor([1.5, -1.0]), 0.25
    position = torch.zeros(2)
    planner = make_planner(PlannerConfig(name=name, horizon=8, samples=64, iterations=5, elites=8), CONTINUOUS)
    counter = CountingPlanner(planner)
    mpc = MPC(planner, MPCConfig(replan_every=2))
    generator = seeded()
    for _ in range(20):
        action = mpc.act(point_mass_cost(position.clone(), goal, dt, mean_over_path=True), generator)
        assert action.shape == (2,) and action.abs().max() <= 1.0
        position += dt * action
    assert (position - goal).norm() < 0.1
    assert len(counter.inits) == 10 and len(mpc.plan_seconds) == 10
    assert all(s > 0 for s in mpc.plan_seconds)


@pytest.mark.parametrize("replan_every", [1, 3, 4, 10])
def test_mpc_replans_every_k_steps(replan_every: int) -> None:
    planner = make_planner(PlannerConfig(horizon=10, samples=8, iterations=1, elites=2), CONTINUOUS)
    counter = CountingPlanner(planner)
    mpc = MPC(planner, MPCConfig(replan_every=replan_every))
    cost = quadratic_cost(fixed_target(10))
    actions = [mpc.act(cost, seeded()) for _ in range(10)]
    assert len(counter.results) == math.ceil(10 / replan_every) == len(mpc.plan_seconds)
    executed = torch.cat([r.actions[:replan_every] for r in counter.results])[:10]
    assert torch.equal(torch.stack(actions), executed)


def test_mpc_shifts_the_plan_as_the_next_warm_start() -> None:
    spec = ActionSpec("continuous", dim=2, low=-1.0, high=2.0)  # the zero action is not the middle
    planner = make_planner(PlannerConfig(horizon=5, samples=8, iterations=1, elites=2), spec)
    counter = CountingPlanner(planner)
    mpc = MPC(planner, MPCConfig(replan_every=2))
    for _ in range(4):
        mpc.act(quadratic_cost(fixed_target(5)), seeded())
    assert counter.inits[0] is None
    first = counter.results[0].decisions
    torch.testing.assert_close(counter.inits[1], torch.cat([first[2:], torch.zeros(2, 2)]))
    mpc.reset()
    mpc.act(quadratic_cost(fixed_target(5)), seeded())
    assert counter.inits[2] is None and len(mpc.plan_seconds) == 3


def test_mpc_gives_a_cold_start_its_own_iterations() -> None:
    planner = make_planner(PlannerConfig(horizon=5, samples=8, iterations=2, elites=2), CONTINUOUS)
    counter = CountingPlanner(planner)
    mpc = MPC(planner, MPCConfig(replan_every=1, first_iterations=6))
    for _ in range(3):
        mpc.act(quadratic_cost(fixed_target(5)), seeded())
    mpc.reset()
    mpc.act(quadratic_cost(fixed_target(5)), seeded())
    assert [len(r.costs_per_iteration) for r in counter.results] == [6, 2, 2, 6]
    with pytest.raises(UserInputError, match="first_iterations"):
        MPC(planner, MPCConfig(first_iterations=0))


def test_mpc_rounds_replan_every_up_to_whole_decisions() -> None:
    planner = make_planner(PlannerConfig(horizon=4, action_repeat=3, samples=8, iterations=1, elites=2), CONTINUOUS)
    counter = CountingPlanner(planner)
    mpc = MPC(planner, MPCConfig(replan_every=4))
    assert mpc.steps_per_plan == 6 and mpc.decisions_per_plan == 2
    actions = torch.stack([mpc.act(quadratic_cost(fixed_target(12)), seeded()) for _ in range(12)])
    assert len(counter.results) == 2
    assert torch.equal(actions[:3], actions[0].expand(3, 2))  # a held decision is never cut short
    first = counter.results[0].decisions
    torch.testing.assert_close(counter.inits[1], torch.cat([first[2:], torch.zeros(2, 2)]))


def test_mpc_discrete_returns_scalar_actions_and_shifts_probabilities() -> None:
    planner = make_planner(PlannerConfig(horizon=6, samples=32, iterations=4, elites=4), DISCRETE)
    counter = CountingPlanner(planner)
    mpc = MPC(planner, MPCConfig(replan_every=1))
    action = mpc.act(mismatch_cost, seeded())
    assert action.shape == () and action.dtype == torch.int64
    mpc.act(mismatch_cost, seeded())
    probs = counter.results[0].mean
    torch.testing.assert_close(counter.inits[1], torch.cat([probs[1:], torch.full((1, 5), 0.2)]))


# ---------------------------------------------------------------------------- specs and errors


def test_action_spec_from_gym() -> None:
    box = ActionSpec.from_gym(gym.spaces.Box(-2.0, 2.0, (3,), np.float32), max_norm=2.45)
    assert box == ActionSpec("continuous", dim=3, low=-2.0, high=2.0, max_norm=2.45)
    assert ActionSpec.from_gym(gym.spaces.Discrete(7)) == ActionSpec("discrete", n=7)
    with pytest.raises(UserInputError, match="MultiDiscrete"):
        ActionSpec.from_gym(gym.spaces.MultiDiscrete([3, 3]))
    with pytest.raises(UserInputError, match="1-D Box"):
        ActionSpec.from_gym(gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32))
    with pytest.raises(UserInputError, match="bounds per dimension"):
        ActionSpec.from_gym(gym.spaces.Box(np.array([-1, -2], np.float32), np.array([1, 2], np.float32)))
    with pytest.raises(UserInputError, match="finite"):
        ActionSpec.from_gym(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32))


@pytest.mark.parametrize("change, field", [
    ({"horizon": 0}, "planner.horizon"),
    ({"action_repeat": 0}, "planner.action_repeat"),
    ({"iterations": 0}, "planner.iterations"),
    ({"samples": 1}, "planner.samples"),
    ({"elites": 0}, "planner.elites"),
    ({"samples": 16, "elites": 17}, "planner.elites"),
    ({"temperature": 0.0}, "planner.temperature"),
    ({"init_std": -1.0}, "planner.init_std"),
    ({"min_std": -0.1}, "planner.min_std"),
    ({"momentum": 1.0}, "planner.momentum"),
    ({"min_prob": 0.0}, "planner.min_prob"),
    ({"name": "random-shooting"}, "known: cem, mppi"),
])
def test_bad_planner_config_is_a_user_error(change: dict, field: str) -> None:
    with pytest.raises(UserInputError, match=field):
        make_planner(PlannerConfig(**change), CONTINUOUS)


def test_bad_specs_inits_and_mpc_configs_are_user_errors() -> None:
    with pytest.raises(UserInputError, match="min_prob"):
        make_planner(PlannerConfig(min_prob=0.25), DISCRETE)
    with pytest.raises(UserInputError, match="dim"):
        ActionSpec("continuous")
    with pytest.raises(UserInputError, match="max_norm"):
        ActionSpec("continuous", dim=2, low=0.5, high=1.0, max_norm=1.0)
    planner = make_planner(PlannerConfig(horizon=4, samples=8, iterations=1, elites=2), CONTINUOUS)
    with pytest.raises(UserInputError, match=r"shape \[4, 2\]"):
        planner.plan(quadratic_cost(fixed_target(4)), init=torch.zeros(3, 2))
    discrete = make_planner(PlannerConfig(horizon=6, samples=8, iterations=1, elites=2), DISCRETE)
    with pytest.raises(UserInputError, match="probabilities"):
        discrete.plan(mismatch_cost, init=torch.randn(6, 5))
    with pytest.raises(UserInputError, match="mpc.replan_every"):
        MPC(planner, MPCConfig(replan_every=0))
    with pytest.raises(UserInputError, match="mpc.replan_every"):
        MPC(planner, MPCConfig(replan_every=5))
    with pytest.raises(ValueError, match=r"shape \[8\]"):
        planner.plan(lambda a: torch.zeros(3))
