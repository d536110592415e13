"""The `nextworld` command: parse a verb's arguments, call one library function, print.

Each verb is a dataclass of arguments (tyro builds the command line and --help from the
field docstrings) and a runner. Errors a user can cause (UserInputError) print one line
on stderr and exit 2; Ctrl-C exits 130 after whatever the library saved.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable

import tyro
from rich.console import Console
from rich.table import Table

from nextworld.errors import UserInputError

if TYPE_CHECKING:  # imported when their verb runs (see VERBS), so a light verb does not load torch
    from nextworld.agents.dreamer import DreamerTrainConfig
    from nextworld.data.sources.collect import CollectConfig
    from nextworld.data.sources.video import IngestConfig
    from nextworld.eval.evaluate import EvalConfig
    from nextworld.models.genie.training import GenieTrainConfig
    from nextworld.models.jepa.training import JEPATrainConfig
    from nextworld.planning.episodes import PlanConfig
    from nextworld.play.dream import DreamConfig
    from nextworld.play.serve_config import ServeConfig

console = Console(soft_wrap=True)  # never break a path across lines


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}"


# ---------------------------------------------------------------------------- info


@dataclass
class InfoArgs:
    """Summarise an episode dataset: episodes, frames, shape, fps, actions, labels, splits, size."""

    path: Annotated[Path, tyro.conf.Positional]
    """Dataset directory (holds meta.json)."""
    verify: bool = False
    """Also check every shard's sha256 checksum (reads the whole dataset once)."""
    json: bool = False
    """Print the summary as JSON instead of a table."""


def run_info(args: InfoArgs) -> int:
    from nextworld.data.summary import summarize_dataset

    s = summarize_dataset(args.path, verify=args.verify)
    if args.json:
        payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(s).items()}
        print(json.dumps(payload, indent=1))
        return 0
    space = s.action_space
    actions = {"none": "none (action-free)", "discrete": f"Discrete({space.get('n')})"}.get(
        space["type"], f"Box{tuple(space.get('shape', ()))}")
    table = Table(title=f"dataset {s.path}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("episodes", f"{s.episodes:,}"),
        ("frames", f"{s.frames:,}"),
        ("episode length", f"min {s.episode_length[0]}, mean {s.episode_length[1]:.1f}, max {s.episode_length[2]}"),
        ("frame shape", "×".join(map(str, s.frame_shape))),
        ("fps", f"{s.fps:g}"),
        ("action space", actions),
        ("labels", ", ".join(s.labels) or "none"),
        ("split", f"{s.split['by']}s {s.split['range'][0]}:{s.split['range'][1]}" if s.split else "not recorded"),
        ("levels", f"{s.levels[0]} … {s.levels[1]}" if s.levels else "not recorded"),
        ("seeds", f"{s.seeds[0]} … {s.seeds[1]}" if s.seeds else "not recorded"),
        ("source", ", ".join(f"{k}={v}" for k, v in s.source.items()) or "unknown"),
        ("shards", str(s.shards)),
        ("size on disk", _human_bytes(s.bytes_on_disk)),
        ("checksums", "all verified" if s.verified else "not checked (pass --verify)"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    return 0


# ---------------------------------------------------------------------------- collect / ingest


def run_collect(cfg: "CollectConfig") -> int:
    from nextworld.data.sources.collect import collect

    summary = collect(cfg)
    console.print(f"collected {summary.episodes:,} episodes, {summary.frames:,} frames "
                  f"({summary.frames_per_second:,.0f} frames/s) into {summary.out}")
    return 0


def run_ingest(cfg: "IngestConfig") -> int:
    from nextworld.data.sources.video import ingest

    summary = ingest(cfg)
    console.print(f"ingested {summary.episodes:,} videos, {summary.frames:,} frames into {summary.out}")
    if summary.skipped:
        console.print(f"[yellow]skipped {len(summary.skipped)} file(s) that did not decode:[/yellow]")
        for path, reason in summary.skipped:
            console.print(f"  {path}: {reason}", markup=False, highlight=False)
    return 0


# ---------------------------------------------------------------------------- train / eval


def _main_process() -> bool:
    """True except on the non-zero ranks of a torchrun launch, which stay quiet."""
    return os.environ.get("RANK", "0") == "0"


def run_train_genie(cfg: GenieTrainConfig) -> int:
    from nextworld.models.genie.training import train_genie

    results = train_genie(cfg)
    interrupted = any(r.interrupted for r in results.values())
    if _main_process():
        for stage, r in results.items():
            loss = r.metrics.get("losses/loss")
            console.print(f"{stage}: {r.steps} steps in {r.seconds:.0f} s"
                          + (f", loss {loss:.4f}" if loss is not None else "") + f" -> {r.run_dir}")
        if interrupted:
            levels = f" --levels {cfg.levels}" if cfg.levels else ""
            console.print(f"interrupted; checkpoint saved. Continue with: nextworld train genie --data {cfg.data} "
                          f"--out {cfg.out} --preset {cfg.preset}{levels} --resume")
    return 130 if interrupted else 0


def run_train_jepa(cfg: JEPATrainConfig) -> int:
    from nextworld.models.jepa.training import train_jepa

    result = train_jepa(cfg)
    if _main_process():
        loss = result.metrics.get("losses/loss")
        console.print(f"jepa ({cfg.model}): {result.steps} steps in {result.seconds:.0f} s"
                      + (f", loss {loss:.4f}" if loss is not None else "") + f" -> {result.run_dir}")
        if result.interrupted:
            console.print(f"interrupted; checkpoint saved. Continue with: nextworld train jepa --data {cfg.data} "
                          f"--out {cfg.out} --preset {cfg.preset} --model {cfg.model} --resume")
    return 130 if result.interrupted else 0


def run_train_dreamer(cfg: DreamerTrainConfig) -> int:
    from nextworld.agents.dreamer import train_dreamer

    result = train_dreamer(cfg)
    evaluated = ""
    if result.last_eval:
        evaluated = (f"; eval success {result.last_eval['eval/success_rate']:.2f}, "
                     f"return {result.last_eval['eval/mean_return']:.3f}")
    console.print(f"dreamer: {result.env_steps} env steps, {result.updates} updates in {result.seconds:.0f} s"
                  f"{evaluated} -> {result.run_dir}")
    if result.interrupted:
        console.print(f"interrupted; checkpoint saved. Continue with: nextworld train dreamer --env {cfg.env} "
                      f"--out {cfg.out} --env-steps {cfg.env_steps} --preset {cfg.preset} --resume")
    return 130 if result.interrupted else 0


def _print_metrics(title: str, metrics: dict) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in metrics.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            continue  # per-episode records: in the JSON, too long for a table
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def run_eval(cfg: EvalConfig) -> int:
    from nextworld.eval.evaluate import evaluate

    metrics = evaluate(cfg)
    _print_metrics(f"eval {cfg.run} on {cfg.data}", metrics)
    if cfg.json is not None:
        console.print(f"wrote {cfg.json}")
    return 0


# ---------------------------------------------------------------------------- dream


def run_dream(cfg: DreamConfig) -> int:
    from nextworld.play.dream import dream

    console.print(f"wrote {dream(cfg)}")
    return 0


# ---------------------------------------------------------------------------- plan


def run_plan(cfg: PlanConfig) -> int:
    from nextworld.planning.episodes import plan_episodes

    metrics = plan_episodes(cfg)
    _print_metrics(f"plan {cfg.run} in {cfg.env}", {k: v for k, v in metrics.items() if k not in ("planner", "per_episode")})
    if cfg.json is not None:
        console.print(f"wrote {cfg.json}")
    return 0


# ---------------------------------------------------------------------------- serve


def run_serve(cfg: ServeConfig) -> int:
    from nextworld.play.server import serve

    serve(cfg, on_ready=lambda url: console.print(f"playing {cfg.run} at {url} (Ctrl-C stops)",
                                                  markup=False, highlight=False))
    return 0


# ---------------------------------------------------------------------------- dispatch

Verb = tuple[str, Callable[..., int]]

VERBS: dict[str, Verb | dict[str, Verb]] = {
    "collect": ("nextworld.data.sources.collect:CollectConfig", run_collect),
    "ingest": ("nextworld.data.sources.video:IngestConfig", run_ingest),
    "info": ("nextworld.cli:InfoArgs", run_info),
    "train": {"genie": ("nextworld.models.genie.training:GenieTrainConfig", run_train_genie),
              "jepa": ("nextworld.models.jepa.training:JEPATrainConfig", run_train_jepa),
              "dreamer": ("nextworld.agents.dreamer:DreamerTrainConfig", run_train_dreamer)},
    "eval": ("nextworld.eval.evaluate:EvalConfig", run_eval),
    "dream": ("nextworld.play.dream:DreamConfig", run_dream),
    "plan": ("nextworld.planning.episodes:PlanConfig", run_plan),
    "serve": ("nextworld.play.serve_config:ServeConfig", run_serve),
}
"""verb -> ("module:ArgumentsDataclass", runner), or for verbs per model family, family -> that.
The dataclass is imported only when its verb is used: most pull in torch, which takes a second."""


def arguments_class(path: str) -> type:
    """The arguments dataclass named by ``"module:Class"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _usage() -> str:
    lines = ["usage: nextworld VERB [--help] ...", "",
             "nextworld: learn a world from video, play it, plan in it, measure it.", "", "verbs:"]
    for name, entry in VERBS.items():
        families = f" {{{','.join(entry)}}}" if isinstance(entry, dict) else ""
        if isinstance(entry, dict):
            summary = f"Train a model of one family ({', '.join(entry)}); see `nextworld {name} FAMILY --help`."
        else:
            summary = (arguments_class(entry[0]).__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name + families:<16} {summary}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nextworld` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"nextworld: error: unknown verb {verb!r}; choose one of {', '.join(VERBS)}", file=sys.stderr)
        return 2
    entry = VERBS[verb]
    if isinstance(entry, dict):
        family = rest[0] if rest and rest[0] in entry else None
        # only the named family's module is imported; without one (or with --help) tyro lists them all
        chosen = {family: entry[family]} if family else entry
        classes = {name: arguments_class(path) for name, (path, _) in chosen.items()}
        args = tyro.extras.subcommand_cli_from_dict(classes, args=rest, prog=f"nextworld {verb}")
        runner = next(chosen[name][1] for name, cls in classes.items() if isinstance(args, cls))
    else:
        path, runner = entry
        cls = arguments_class(path)
        args = tyro.cli(cls, args=rest, prog=f"nextworld {verb}", description=cls.__doc__)
    try:
        return runner(args)
    except UserInputError as e:
        print(f"nextworld: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nextworld: interrupted", file=sys.stderr)
        return 130
