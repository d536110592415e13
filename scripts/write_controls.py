"""Write a world's ``controls.json`` (arrow keys and Space -> its actions) from a fitted latent->real map.

    python scripts/write_controls.py WORLD_DIR --eval eval.json [--env coinrun]

``eval.json`` is what ``nextworld eval WORLD --data HELDOUT --json eval.json`` wrote for the world; its
``action_map`` sends each latent action to the real action most often recorded with it (fitted on at
most 1% labelled frames; its ``action_map_accuracy`` says how far to trust it). Each key gets a latent
action that the map sends to the key's meaning in the env (``play.controls``), and ``nextworld serve``
shows the keys on the action buttons.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nextworld.atomic_files import read_json, write_json_atomic
from nextworld.play.controls import CONTROLS_FILE, PROCGEN_KEY_ACTIONS, controls_from_action_map, read_key_map

KEY_ACTIONS = {"coinrun": PROCGEN_KEY_ACTIONS, "procgen": PROCGEN_KEY_ACTIONS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("--eval", type=Path, required=True, help="the world's eval JSON (with action_map)")
    parser.add_argument("--env", default="coinrun", choices=sorted(KEY_ACTIONS))
    args = parser.parse_args()
    report = read_json(args.eval)
    if not isinstance(report, dict) or not isinstance(report.get("action_map"), list):
        raise SystemExit(f"{args.eval}: no action_map (evaluate a Genie world with actions in its data)")
    controls = controls_from_action_map(report["action_map"], KEY_ACTIONS[args.env])
    write_json_atomic(args.world / CONTROLS_FILE, controls)
    read_key_map(args.world, len(report["action_map"]))  # the server's own check
    print(json.dumps({"controls": controls, "action_map": report["action_map"],
                      "action_map_accuracy": report.get("action_map_accuracy")}))


if __name__ == "__main__":
    main()
