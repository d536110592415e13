"""Package a single-checkpoint model (e.g. a JEPA world model) into the zoo: ``src/nextworld/zoo/NAME/``.

    python scripts/package_model.py RUN NAME [--dtype float32|float16] [--max-mb 10] [--overwrite]
    python scripts/package_model.py RUN NAME --card EVAL_JSON [--plan PLAN_JSON] --command-file BUILD_SCRIPT

The first form copies the run's ``config.json`` (its model config, training config and data
record) and weights into the zoo through a staging directory renamed into place, so a failure
leaves no half-packaged model. The second writes the model card ``README.md`` and ``eval.json``
(the probe evaluation and, when given, the planning results, measured on the packaged weights):
what the model is, the command that made it, its data and compute, and its numbers.
(Genie worlds, which have three stages, are packaged by ``package_world.py``.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nextworld.atomic_files import replace_directory, write_atomic, write_json_atomic
from nextworld.models.base import CONFIG_NAME, WEIGHTS_NAME, read_checkpoint_config
from nextworld.zoo import ZOO_DIR

KEEP = ("format", "version", "family", "config", "train", "data", "jepa")
"""config.json keys a packaged model keeps (the run's other keys are about its run directory)."""


def package(run: Path, name: str, dtype: torch.dtype, max_mb: float, overwrite: bool) -> Path:
    target = ZOO_DIR / name
    if target.exists() and not overwrite:
        sys.exit(f"{target}: exists; pass --overwrite to replace it")
    config = read_checkpoint_config(run)
    staging = ZOO_DIR / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        tensors = load_file(str(run / WEIGHTS_NAME))
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps({k: config[k] for k in KEEP if k in config}, indent=1) + "\n")
        size_mb = (staging / WEIGHTS_NAME).stat().st_size / 1e6
        if size_mb > max_mb:
            sys.exit(f"{name}: {size_mb:.1f} MB of weights, over the {max_mb} MB limit")
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"packaged {run} as {target} ({size_mb:.2f} MB of {str(dtype).removeprefix('torch.')} weights)")
    return target


def training_minutes(run: Path) -> float:
    """The training steps' own wall-clock minutes, from the run's metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    seconds = sum(r["perf/seconds_per_step"] * (r["step"] - prev["step"])
                  for prev, r in zip([{"step": 0}, *records], records))
    return round(seconds / 60, 1)


def write_card(run: Path, name: str, eval_json: Path, plan_json: Path | None, command_file: Path,
               note: str) -> Path:
    target = ZOO_DIR / name
    config = read_checkpoint_config(target)
    probe = json.loads(eval_json.read_text())
    plan = json.loads(plan_json.read_text()) if plan_json is not None else None
    train = config.get("train", {})
    model = config["config"]
    data = config.get("data", {})
    meta_path = Path(data.get("path", "")) / "meta.json"
    source = json.loads(meta_path.read_text()).get("source", {}) if meta_path.is_file() else {}
    size_mb = (target / WEIGHTS_NAME).stat().st_size / 1e6
    rows = [("probe_r2_position", probe.get("probe_r2_position"))]
    rows += [(k, v) for k, v in probe.items() if k.startswith("probe_r2_position_k")]
    rows += [(k, probe.get(k)) for k in ("embedding_std_mean", "embedding_std_min", "effective_rank")]
    if plan is not None:
        rows += [(k, plan.get(k)) for k in ("success_rate", "mean_steps", "seconds_per_plan", "seconds_per_episode")]
    results = "\n".join(f"| `{k}` | {v:.4g} |" for k, v in rows if isinstance(v, (int, float)))
    card = f"""# {name}

An action-conditioned JEPA world model ({config['family']}): an encoder maps a 64x64 frame to a
{model['embed_dim']}-number embedding, and a predictor rolls embeddings forward under actions; it
never predicts pixels. Plan with it: `nextworld plan {name} --env tworooms --episodes 50`.
Regularizer: {model['regularizer']}; inverse-dynamics head: {model['inverse_dynamics']};
{model['rollout_steps']}-step open-loop rollouts in training.

## How it was made

Data: `{data.get('path')}` ({source.get('kind', '?')}, policy {source.get('policy', '?')}, seeds from
{source.get('seed', '?')}; made by the first command below). Planning is evaluated on episode
seeds never used for the data. The whole recipe, from an empty machine:

```bash
{command_file.read_text().strip()}
```

Compute: {train.get('steps', '?'):,} steps at batch {train.get('batch_size', '?')}, lr {train.get('lr', '?')},
{training_minutes(run)} minutes of training steps on a 2-core CPU (from the run's metrics.jsonl).
Weights: {size_mb:.2f} MB.
{note}
## Results (these packaged weights)

| metric | value |
|---|---|
{results}

Definitions: `docs/jepa.md`. The evaluation JSON (`eval.json`):

```json
{json.dumps({"probe": probe, "plan": plan}, indent=1)}
```
"""
    write_atomic(target / "README.md", lambda tmp: tmp.write_text(card))
    write_json_atomic(target / "eval.json", {"probe": probe, "plan": plan})
    print(f"wrote {target / 'README.md'}")
    return target / "README.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32"])
    parser.add_argument("--max-mb", type=float, default=10.0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--card", type=Path, help="write the model card from this eval JSON instead of packaging")
    parser.add_argument("--plan", type=Path, help="the `nextworld plan` JSON measured on the packaged model")
    parser.add_argument("--command-file", type=Path, help="the script that reproduces the model (for --card)")
    parser.add_argument("--note", default="", help="a paragraph for the card about how this run was made")
    args = parser.parse_args()
    if args.card is not None and args.command_file is None:
        parser.error("--card needs --command-file (the script that reproduces the model)")
    if args.card is not None:
        write_card(args.run, args.name, args.card, args.plan, args.command_file, args.note)
    else:
        package(args.run, args.name, getattr(torch, args.dtype), args.max_mb, args.overwrite)


if __name__ == "__main__":
    main()
