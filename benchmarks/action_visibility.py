"""How much of the recorded action can any latent action model see? (issue 3: ``action_nmi``)

``action_nmi`` compares a world's latent actions with the actions the data recorded. Some of
those are invisible in the frames (CoinRun's six extra keys do nothing; a move at full speed
changes nothing; a jump in mid-air neither), so no model can reach 1. This script measures
hand-made "oracle" latents read straight off the pixels of a held-out dataset and reports
their NMI with the recorded action a_t of the same transitions (row t: frame t, then a_t):

- ``scroll``: the whole-frame shift (dy, dx) in [-4, 4]^2 between frames t and t+1 that best
  aligns them (CoinRun's camera follows the agent, so this is the agent's motion);
- ``scroll_change``: that shift minus the one between frames t-1 and t (what a_t changed);
- ``scroll_and_change``: both together (many bins: NMI with finite samples is biased upward);
- ``scroll_before`` and ``scroll_after``: the shift one transition earlier (t-1 -> t) and one
  later (t+1 -> t+2), against the same a_t: a lag between an action and the motion it causes
  would show as ``scroll_after`` above ``scroll``;
- ``previous_action``: the recorded a_{t-1}, how much a sticky policy repeats itself;
- ``effective_action``: a_t merged into the six classes the game tells apart (left, left+jump,
  right, right+jump, jump, nothing): the ceiling of a model that read the action perfectly.

    python benchmarks/action_visibility.py --data DIR [--every 3] [--episodes 30]

Prints one JSON line and a summary. A few seconds on one core.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.camera import MAX_SHIFT, camera_shifts
from nextworld.eval.metrics import normalised_mutual_information as nmi

# Procgen's 15 actions: LEFT+DOWN, LEFT, LEFT+UP, DOWN, NOOP, UP, RIGHT+DOWN, RIGHT, RIGHT+UP, D, A, W, S, Q, E
EFFECTIVE_COINRUN = np.array([0, 0, 1, 2, 2, 3, 4, 4, 5, 2, 2, 2, 2, 2, 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="an episode dataset with recorded discrete actions")
    parser.add_argument("--every", type=int, default=3, help="read every k-th transition of an episode")
    parser.add_argument("--episodes", type=int, default=30, help="episodes read, evenly spaced")
    args = parser.parse_args()
    ds = EpisodeDataset(args.data)
    rows = []
    for e in np.linspace(0, len(ds) - 1, min(args.episodes, len(ds))).round().astype(int):
        r = ds.read(int(e), 0, ds.episodes[e].length, keys=("frames", "actions"))
        shifts = camera_shifts(torch.from_numpy(r["frames"]).permute(0, 3, 1, 2)).tolist()  # shifts[t]: t -> t+1
        actions = r["actions"]
        for t in range(1, len(shifts) - 1, args.every):
            rows.append((*shifts[t - 1], *shifts[t], actions[t], actions[t - 1], *shifts[t + 1]))
    r = np.array(rows)
    true = r[:, 4]
    span = 2 * MAX_SHIFT + 1
    def shift_bin(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        return (dy + MAX_SHIFT) * span + dx + MAX_SHIFT

    scroll = shift_bin(r[:, 2], r[:, 3])
    change = (r[:, 2] - r[:, 0] + 2 * MAX_SHIFT) * (2 * span) + (r[:, 3] - r[:, 1] + 2 * MAX_SHIFT)
    result = {"data": args.data, "transitions": len(r),
              "nmi": {"scroll": nmi(scroll, true), "scroll_change": nmi(change, true),
                      "scroll_and_change": nmi(change * span * span + scroll, true),
                      "scroll_before": nmi(shift_bin(r[:, 0], r[:, 1]), true),
                      "scroll_after": nmi(shift_bin(r[:, 6], r[:, 7]), true),
                      "previous_action": nmi(r[:, 5], true)},
              "camera_still_share": float(((r[:, 2] == 0) & (r[:, 3] == 0)).mean())}
    if int(true.max()) < len(EFFECTIVE_COINRUN):
        result["nmi"]["effective_action"] = nmi(EFFECTIVE_COINRUN[true], true)
    print(json.dumps(result))
    for name, value in result["nmi"].items():
        print(f"{name:20s} NMI {value:.3f}")
    print(f"over {len(r)} transitions of {args.data}; the camera did not move in "
          f"{result['camera_still_share']:.0%} of them")


if __name__ == "__main__":
    main()
