"""Planning in a world model: CEM and MPPI over action sequences, and receding-horizon control."""

from nextworld.planning.mpc import MPC, MPCConfig
from nextworld.planning.planners import (
    CEM,
    MPPI,
    ActionSpec,
    CostFn,
    Planner,
    PlannerConfig,
    PlanResult,
    make_planner,
)

__all__ = ["CEM", "MPC", "MPPI", "ActionSpec", "CostFn", "MPCConfig", "PlanResult", "Planner", "PlannerConfig",
           "make_planner"]
