"""Throughput of CoinRun collection, writing the dataset included.

Collects CoinRun episodes (hard mode, levels 0:10000, random policy) into a temporary
directory and prints frames per second as one JSON line, then a line for people:

    python benchmarks/collect_throughput.py [--episodes 200] [--num-envs 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from nextworld.data.sources.collect import CollectConfig, collect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="complete episodes to collect (about 500 frames each)")
    parser.add_argument("--num-envs", type=int, default=CollectConfig.num_envs, help="Procgen envs stepped together")
    parser.add_argument("--seed", type=int, default=0, help="seed of the policy and the levels")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nextworld-collect-") as tmp:
        cfg = CollectConfig(source="coinrun", out=Path(tmp) / "coinrun", episodes=args.episodes,
                            levels="0:10000", policy="random", seed=args.seed,
                            num_envs=args.num_envs, progress=False)
        summary = collect(cfg)
    result = {
        "benchmark": "collect_throughput", "source": "coinrun", "episodes": summary.episodes,
        "frames": summary.frames, "seconds": round(summary.seconds, 3),
        "frames_per_second": round(summary.frames_per_second, 1), "num_envs": args.num_envs,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    print(f"CoinRun collection: {summary.frames:,} frames in {summary.seconds:.1f} s = "
          f"{summary.frames_per_second:,.0f} frames/s (collection + writing, {args.num_envs} envs)")


if __name__ == "__main__":
    main()
