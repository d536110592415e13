"""Package a trained world into the zoo: ``src/nextworld/zoo/NAME/``.

Copies each stage's ``config.json`` and weights (in float16 by default: a shipped world must
stay under 10 MB; loading casts back to the model's float32), writes ``world.json``, and
then (second call) the model card.

    python scripts/package_world.py RUN NAME [--dtype float16|float32] [--max-mb 10]
    python scripts/package_world.py RUN NAME --card EVAL_JSON --command-file BUILD_SCRIPT

The second form writes the model card ``README.md`` (and ``eval.json``) of a packaged world:
what it is, the command that made it, its data and compute (from the run's metrics), and the
evaluation JSON measured on the packaged weights.

Refuses to overwrite an existing zoo entry unless ``--overwrite``; writes into a staging
directory and renames it into place, so a failure leaves no half-packaged world.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nextworld.atomic_files import read_json, replace_directory, write_atomic
from nextworld.models.base import CONFIG_NAME, WEIGHTS_NAME, read_checkpoint_config
from nextworld.models.genie.world import STAGE_FAMILIES, WORLD_FILE
from nextworld.play.controls import CONTROLS_FILE, KEY_SYMBOLS, read_key_map
from nextworld.train.metrics_log import METRICS_NAME, read_records
from nextworld.zoo import ZOO_DIR


def package(run: Path, name: str, dtype: torch.dtype, max_mb: float, overwrite: bool) -> Path:
    target = ZOO_DIR / name
    if target.exists() and not overwrite:
        sys.exit(f"{target}: exists; pass --overwrite to replace it")
    staging = ZOO_DIR / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for stage, family in STAGE_FAMILIES.items():
            config = read_checkpoint_config(run / stage)
            if config["family"] != family:
                sys.exit(f"{run / stage}: a {config['family']!r} checkpoint, expected {family!r}")
            (staging / stage).mkdir(parents=True)
            tensors = load_file(str(run / stage / WEIGHTS_NAME))
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
            save_file(tensors, str(staging / stage / WEIGHTS_NAME), metadata={"format": "pt"})
            keep = {k: config[k] for k in ("format", "version", "family", "config", "train", "data", "genie")
                    if k in config}
            (staging / stage / CONFIG_NAME).write_text(json.dumps(keep, indent=1) + "\n")
        shutil.copy(run / WORLD_FILE, staging / WORLD_FILE)
        size_mb = sum(p.stat().st_size for p in staging.rglob("*.safetensors")) / 1e6
        if size_mb > max_mb:
            sys.exit(f"{name}: {size_mb:.1f} MB of weights, over the {max_mb} MB limit")
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"packaged {run} as {target} ({size_mb:.2f} MB of {str(dtype).removeprefix('torch.')} weights)")
    return target


def stage_compute(run: Path, stage: str) -> dict:
    """Steps, batch, wall-clock minutes and device of one stage, from its run directory."""
    config = read_checkpoint_config(run / stage)
    records = read_records(run / stage / METRICS_NAME)
    seconds = sum(r["perf/seconds_per_step"] * (r["step"] - prev["step"])
                  for prev, r in zip([{"step": 0}, *records], records))
    return {"steps": records[-1]["step"], "batch_size": config["train"]["batch_size"],
            "lr": config["train"]["lr"], "minutes": round(seconds / 60, 1), "device": config["train"]["device"]}




def keys_section(target: Path, metrics: dict) -> str:
    """The card's paragraph on the world's ``controls.json`` (written by scripts/write_controls.py), if it has one."""
    if not (target / CONTROLS_FILE).is_file():
        return ""
    missing = [k for k in ("action_map", "action_map_labelled_frames", "action_map_accuracy",
                           "action_majority_baseline") if k not in metrics]
    if missing:
        raise SystemExit(f"{target / CONTROLS_FILE}: the card explains the keys from the eval's latent->real map, "
                         f"but the eval JSON has no {', '.join(missing)} (evaluate on data with recorded actions)")
    controls = read_key_map(target, len(metrics["action_map"]))
    keys_of: dict[int, list[str]] = {}
    for key, action in controls.items():
        keys_of.setdefault(action, []).append(KEY_SYMBOLS[key])
    meta = Path(str(metrics.get("data"))) / "meta.json"  # the evaluation data names the real actions
    names = read_json(meta).get("source", {}).get("action_names") if meta.is_file() else None

    def real(a: int) -> str:
        index = metrics["action_map"][a]
        return names[index] if names and index < len(names) else f"real action {index}"

    plays = "; ".join(f"{' and '.join(keys)} play{'s' if len(keys) == 1 else ''} latent action {a} "
                      f"(mapped to {real(a)})" for a, keys in sorted(keys_of.items()))
    unmapped = [symbol for key, symbol in KEY_SYMBOLS.items() if key not in controls]
    if unmapped:
        plays += f"; {' and '.join(unmapped)} {'is' if len(unmapped) == 1 else 'are'} unmapped (no latent action maps to {'it' if len(unmapped) == 1 else 'them'})"
    return f"""
## Keys (`controls.json`)

`python scripts/write_controls.py src/nextworld/zoo/{target.name} --eval src/nextworld/zoo/{target.name}/eval.json`
turns the eval's fitted latent -> real action map (`action_map` {metrics['action_map']}) into keys for
`nextworld serve`: {plays}. The map was fitted on {metrics['action_map_labelled_frames']} labelled frames and is
right on {metrics['action_map_accuracy']:.1%} of held-out transitions (the majority guess:
{metrics['action_majority_baseline']:.1%}), so the keys are a rough guide; the number keys play every action.
"""


def note_section(note: str) -> str:
    """The card's paragraph on how the run was made (--note), set apart by blank lines."""
    return f"\n{note.strip()}\n" if note.strip() else ""


def sampling_section(target: Path) -> str:
    """The card's line on how the world samples, from ``world.json`` (scripts/choose_sampling.py writes it)."""
    sampling = read_json(target / WORLD_FILE).get("sampling")
    if not sampling:
        return ""
    chosen = sampling.get("chosen_on")
    how = (f" It was chosen by `scripts/choose_sampling.py` on the validation split `{chosen['data']}` "
           f"(training levels, not the held-out ones) by {chosen['criterion']}; the whole grid is in "
           f"world.json." if chosen else "")
    bias = (f", adding {sampling['keep_bias']:g} to the log-probability of keeping the moved last frame"
            if sampling.get("keep_bias") else "")
    return (f"\nThe world samples with {sampling['sample_steps']} MaskGIT step(s) at temperature "
            f"{sampling['temperature']:g}{bias} (world.json).{how}\n")


def write_card(run: Path, name: str, eval_json: Path, command_file: Path, note: str = "") -> Path:
    target = ZOO_DIR / name
    metrics = json.loads(eval_json.read_text())
    compute = {stage: stage_compute(run, stage) for stage in STAGE_FAMILIES}
    data = read_checkpoint_config(run / "tokenizer").get("data", {})
    meta_path = Path(data.get("path", "")) / "meta.json"
    split = json.loads(meta_path.read_text()).get("split") if meta_path.is_file() else None
    levels = data.get("levels") or (f"{split['range'][0]}-{split['range'][1] - 1}" if split else "unrecorded")
    sizes = {stage: round((target / stage / WEIGHTS_NAME).stat().st_size / 1e6, 2) for stage in STAGE_FAMILIES}
    rows = "\n".join(f"| {stage} | {c['steps']:,} | {c['batch_size']} | {c['lr']:g} | {c['minutes']} | {sizes[stage]} |"
                      for stage, c in compute.items())
    keys = ["tokenizer_psnr", "tokenizer_ssim", "codebook_usage", "lam_codebook_usage", "psnr_t1", "psnr_t4",
            "psnr_t10", "copy_psnr_t10", "delta_psnr_t4", "action_nmi", "action_map_accuracy", "action_majority_baseline",
            "frames_per_second"]
    results = "\n".join(f"| `{k}` | {metrics[k]:.4g} |" for k in keys if isinstance(metrics.get(k), (int, float)))
    if isinstance(metrics.get("copy_psnr_t10"), (int, float)):
        gap = metrics["psnr_t10"] - metrics["copy_psnr_t10"]
        results += (f"\n\n`copy_psnr_t10` is what a world that never moves scores (the prompt, tokenized, repeated): "
                    f"this world's psnr_t10 is {abs(gap):.2f} dB {'above' if gap >= 0 else 'below'} it.")
    card = f"""# {name}

A Genie world (tokenizer, latent action model, dynamics) learned from CoinRun video alone:
the recorded actions were never read in training, only in evaluation. Play it with
`nextworld dream {name} --prompt IMAGE --actions 0,1,2,...` or
`World.from_pretrained("{name}")`; its 8 latent actions are named by eye with
`nextworld dream {name} --atlas --prompt IMAGE --out atlas.png`.

## How it was made

Data: CoinRun (procgen-mirror, hard mode, 64x64), training levels {levels} only (the dataset
at `{data.get("path")}`, made by the first command below); held-out evaluation on levels >= 100,000. The whole recipe, from
an empty machine (collection, the three training stages, packaging, evaluation):

```bash
{command_file.read_text().strip()}
```

Compute (2-core CPU, ``tiny`` preset; minutes are the training steps' own time from each
stage's metrics.jsonl, without checkpoints and start-up):

| stage | steps | batch | lr | minutes | MB (float16) |
|---|---|---|---|---|---|
{rows}
{sampling_section(target)}{note_section(note)}{keys_section(target, metrics)}
## Results on held-out levels (these packaged float16 weights)

| metric | value |
|---|---|
{results}

Definitions: `docs/genie.md` and DESIGN.md's metric definitions. The full evaluation JSON:

```json
{json.dumps(metrics, indent=1)}
```
"""
    write_atomic(target / "README.md", lambda tmp: tmp.write_text(card))
    write_atomic(target / "eval.json", lambda tmp: shutil.copy(eval_json, tmp))
    print(f"wrote {target / 'README.md'}")
    return target / "README.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--max-mb", type=float, default=10.0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--card", type=Path, help="write the model card from this eval JSON instead of packaging")
    parser.add_argument("--command-file", type=Path, help="the script that reproduces the world (for --card)")
    parser.add_argument("--note", default="", help="a paragraph for the card about how this run was made")
    args = parser.parse_args()
    if args.card is not None:
        write_card(args.run, args.name, args.card, args.command_file, args.note)
    else:
        package(args.run, args.name, getattr(torch, args.dtype), args.max_mb, args.overwrite)


if __name__ == "__main__":
    main()
