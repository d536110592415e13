"""From latent actions to the real ones, with a few labels (Genie's claim: a latent action
model's actions mean something, so a handful of labelled frames name them).

A labelled transition is one dataset row: frame t with the action a_t recorded after it,
paired with the latent action the model inferred for t -> t+1. The map sends each latent
action to the real action most often recorded with it among the labelled transitions (ties
to the smaller index); a latent action that no labelled transition shows goes to the most
common labelled real action. At most ``LABEL_BUDGET`` of the frames may be labelled.
"""

from __future__ import annotations

import numpy as np

from nextworld.errors import UserInputError

LABEL_BUDGET = 0.01
"""The largest fraction of the frames whose real action the map may see."""


def check_labelled_fraction(fraction: float) -> None:
    """Raise UserInputError unless ``0 < fraction <= LABEL_BUDGET``."""
    if not 0 < fraction <= LABEL_BUDGET:
        raise UserInputError(f"labelled fraction {fraction}: must lie in (0, {LABEL_BUDGET}] "
                             f"(at most {LABEL_BUDGET:.0%} of the frames are labelled)")


def labelled_count(num_frames: int, fraction: float) -> int:
    """How many of ``num_frames`` frames are labelled: ``floor(fraction * num_frames)``."""
    check_labelled_fraction(fraction)
    # the small epsilon keeps 0.01 * 300 = 3.0000000000000004 from flooring to 2
    return int(np.floor(fraction * num_frames + 1e-9))


def fit_action_map(latent: np.ndarray, real: np.ndarray, num_latent: int) -> np.ndarray:
    """For every latent action, the real action most often recorded with it.

    Args:
        latent: int [N] latent actions of the labelled transitions, in [0, num_latent).
        real: int [N] the real (recorded) actions of the same transitions, >= 0; N >= 1.
        num_latent: how many latent actions the model has.
    Returns:
        int64 [num_latent]: entry k is the real action that latent action k predicts.
    """
    latent, real = np.asarray(latent).reshape(-1), np.asarray(real).reshape(-1)
    if latent.size == 0 or latent.shape != real.shape:
        raise ValueError(f"fit_action_map needs N >= 1 pairs, got {latent.size} latent and {real.size} real actions")
    counts = np.zeros((num_latent, int(real.max()) + 1), np.int64)
    np.add.at(counts, (latent, real), 1)  # (num_latent, num_real) co-occurrences
    action_map = counts.argmax(axis=1)  # argmax takes the first (smallest) of tied actions
    unseen = counts.sum(axis=1) == 0
    action_map[unseen] = np.bincount(real).argmax()
    return action_map.astype(np.int64)


def action_map_report(latent: np.ndarray, real: np.ndarray, num_latent: int, labelled: int) -> dict[str, object]:
    """Fit the map on the first ``labelled`` transitions and measure it on the others.

    Args:
        latent: int [N] inferred latent actions, in the data's order (so "first" is the
            first part of the held-out data).
        real: int [N] the recorded actions of the same transitions.
        num_latent: how many latent actions the model has.
        labelled: transitions shown to the map, 1 <= labelled < N.
    Returns:
        ``action_map`` (list, latent index -> real action), ``action_map_accuracy`` (share
        of the other transitions whose real action the map names),
        ``action_majority_baseline`` (the accuracy on those of always naming their most
        common real action, a constant predictor that knows the answers' distribution),
        ``action_map_labelled_frames`` and ``action_map_test_transitions``.
    """
    latent, real = np.asarray(latent).reshape(-1), np.asarray(real).reshape(-1)
    if not 1 <= labelled < latent.size:
        raise ValueError(f"need 1 <= labelled < {latent.size} transitions, got {labelled}")
    action_map = fit_action_map(latent[:labelled], real[:labelled], num_latent)
    test_latent, test_real = latent[labelled:], real[labelled:]
    return {
        "action_map": action_map.tolist(),
        "action_map_accuracy": float((action_map[test_latent] == test_real).mean()),
        "action_majority_baseline": float(np.bincount(test_real).max() / test_real.size),
        "action_map_labelled_frames": int(labelled),
        "action_map_test_transitions": int(test_real.size),
    }
