"""Throughput of sheeprl's DreamerV3 (env steps per second, training included) at our Dreamer's size.

sheeprl runs in its own virtual environment (not a nextworld dependency), made once:

    python benchmarks/sheeprl_dreamer.py --setup                 # venv + torch 2.13.0 (CPU) + sheeprl
    python benchmarks/sheeprl_dreamer.py                         # 1,024 random steps, then 2,000 timed
    python benchmarks/sheeprl_dreamer.py --env-steps 300 --learning-starts 128 --json out.json

The run launches ``sheeprl`` (``exp=`` a config this script writes: DreamerV3 on
MiniGrid-Empty-8x8-v0 from 64x64 RGB pixels, 1 environment stepped in-process, CPU) with the
sizes of our ``tiny`` preset by default and everything but interaction and training switched
off (no logger, metrics, timers, checkpoints, videos, test episodes, model registry; the replay
buffer in memory). It prints one JSON line, then a line for people.

Timed: from the end of the random steps (``--learning-starts``: sheeprl plays random actions
and fills its buffer) to the end of the run, i.e. exactly ``--env-steps`` steps played by the
policy, with the gradient steps they trigger. ``total_seconds`` is the whole process (imports,
start-up, random steps included).

Train ratio: replayed steps per env step, as in DreamerV3 (``train_ratio``). sheeprl's
``algo.replay_ratio`` is gradient steps per policy step, so it is set to
``train_ratio / (batch * sequence length)`` (64 / (16 * 64) = 1/16: one gradient step every
16 env steps). With ``action_repeat`` 1 (ours and here) a sheeprl policy step is an env step.

The script imports only the standard library: the venv's python runs this same file with
``--_child`` to time sheeprl from inside (see ``_child``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "sheeprl_requirements.txt"
DEFAULT_VENV = Path(os.environ.get("NEXTWORLD_SHEEPRL_VENV", "/tmp/bench-venvs/sheeprl"))
TORCH_PIN = "torch==2.13.0"
CHILD_FLAG = "--_child"


# ----------------------------------------------------------------------------- setup

def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup(venv: Path, python: str) -> dict:
    """Create ``venv`` and install torch 2.13.0 (first, alone) then sheeprl and minigrid pinned to it."""
    start = time.perf_counter()
    if not _venv_python(venv).exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(_venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    # torch on its own first: the CPU build of 2.13.0; the requirements pin it too, so that no
    # dependency of sheeprl (torch>=2.6, lightning, torchmetrics) can replace it with a CUDA build
    subprocess.run(pip + [TORCH_PIN], check=True)
    subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
    check = ("import importlib.metadata as m, torch, sheeprl, minigrid, gymnasium, json; "
             "print(json.dumps({k: m.version(k) for k in ('sheeprl', 'torch', 'minigrid', 'gymnasium', "
             "'lightning', 'hydra-core', 'numpy')}))")
    out = subprocess.run([str(_venv_python(venv)), "-c", check], check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    versions = json.loads(out.stdout.strip().splitlines()[-1])
    if not versions["torch"].startswith("2.13.0"):
        raise SystemExit(f"setup: the venv has torch {versions['torch']}, not 2.13.0")
    return {"venv": str(venv), "versions": versions, "setup_seconds": round(time.perf_counter() - start, 1)}


# ----------------------------------------------------------------------------- configs

ENV_YAML = """\
# MiniGrid from pixels: the full grid rendered as RGB (what env.render() shows, at {tile} pixels a
# tile: {size}x{size} for an 8x8 grid), the image only (ImgObsWrapper drops direction and mission)
defaults:
  - default
  - _self_

id: {env_id}
num_envs: 1
sync_env: {sync_env}
capture_video: False
screen_size: 64
action_repeat: 1
grayscale: False
wrapper:
  _target_: minigrid.wrappers.ImgObsWrapper
  env:
    _target_: minigrid.wrappers.RGBImgObsWrapper
    tile_size: {tile}
    env:
      _target_: gymnasium.make
      id: ${{env.id}}
      render_mode: rgb_array
"""

EXP_YAML = """\
# @package _global_
# Written by benchmarks/sheeprl_dreamer.py: DreamerV3 at the size of nextworld's Dreamer, timing only
defaults:
  - override /algo: dreamer_v3
  - override /env: nextworld_minigrid
  - _self_

seed: {seed}
num_threads: {threads}
dry_run: False

algo:
  total_steps: {total_steps}
  learning_starts: {learning_starts}
  replay_ratio: {replay_ratio}
  per_rank_batch_size: {batch}
  per_rank_sequence_length: {seq_len}
  per_rank_pretrain_steps: 0
  run_test: False
  cnn_keys:
    encoder: [rgb]
  mlp_keys:
    encoder: []
  dense_units: {hidden}
  mlp_layers: {mlp_layers}
  world_model:
    stochastic_size: {stoch}
    discrete_size: {classes}
    encoder:
      cnn_channels_multiplier: {cnn_multiplier}
    recurrent_model:
      recurrent_state_size: {deter}
    transition_model:
      hidden_size: {hidden}
    representation_model:
      hidden_size: {hidden}

buffer:
  size: {buffer_size}
  memmap: False
  checkpoint: False

checkpoint:
  every: 0
  save_last: False

metric:
  log_level: 0
  disable_timer: True

model_manager:
  disabled: True

fabric:
  accelerator: cpu
  devices: 1
  precision: 32-true
"""


def write_configs(root: Path, args: argparse.Namespace, threads: int) -> None:
    (root / "env").mkdir(parents=True, exist_ok=True)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    (root / "env" / "nextworld_minigrid.yaml").write_text(ENV_YAML.format(
        env_id=args.env_id, tile=args.tile_size, size=8 * args.tile_size, sync_env=not args.async_env))
    (root / "exp" / "nextworld_bench.yaml").write_text(EXP_YAML.format(
        seed=args.seed, threads=threads, total_steps=args.learning_starts + args.env_steps,
        learning_starts=args.learning_starts, replay_ratio=replay_ratio(args), batch=args.batch,
        seq_len=args.seq_len, hidden=args.hidden, mlp_layers=args.mlp_layers, stoch=args.stoch,
        classes=args.classes, cnn_multiplier=args.cnn_multiplier, deter=args.deter,
        buffer_size=args.learning_starts + args.env_steps + 1))


def replay_ratio(args: argparse.Namespace) -> float:
    """sheeprl's gradient steps per policy step from DreamerV3's replayed steps per env step."""
    return args.train_ratio / (args.batch * args.seq_len)


# ----------------------------------------------------------------------------- child (in the venv)

def _child(overrides: list[str]) -> None:
    """Runs in the venv: sheeprl's CLI with ``overrides``, instrumented, results to $SHEEPRL_BENCH_RESULT.

    Learning starts at the first call of the replay ratio (``sheeprl.utils.utils.Ratio``): sheeprl
    calls it once per iteration from the last random one (``iter_num >= train_starts``) on, after
    that iteration's env step, so the calls after the first are the timed policy steps. The end is
    when DreamerV3's ``main`` returns (its test episodes and model registry are switched off)."""
    from importlib import metadata

    import torch

    threads = int(os.environ["SHEEPRL_BENCH_THREADS"])
    torch.set_num_threads(threads)
    t_process = time.perf_counter()

    import sheeprl.algos.dreamer_v3.dreamer_v3 as dv3
    import sheeprl.utils.utils as sutils
    from sheeprl.cli import run

    rec: dict = {"ratio_calls": 0, "gradient_steps": 0, "gradient_steps_timed": 0, "train_seconds": 0.0}
    ratio_call = sutils.Ratio.__call__

    def timed_ratio(self, step):
        if rec["ratio_calls"] == 0:
            rec["t_learning_start"] = time.perf_counter()
        rec["ratio_calls"] += 1
        return ratio_call(self, step)

    sutils.Ratio.__call__ = timed_ratio

    train = dv3.train

    def counted_train(*a, **kw):
        if "t_first_gradient_step" not in rec:
            rec["t_first_gradient_step"] = time.perf_counter()
        rec["gradient_steps"] += 1
        t0 = time.perf_counter()
        out = train(*a, **kw)
        if rec["ratio_calls"] > 0:
            rec["gradient_steps_timed"] += 1
            rec["train_seconds"] = rec.get("train_seconds", 0.0) + time.perf_counter() - t0
        return out

    dv3.train = counted_train

    build_agent = dv3.build_agent

    def recorded_build_agent(fabric, actions_dim, is_continuous, cfg, observation_space, *a, **kw):
        built = build_agent(fabric, actions_dim, is_continuous, cfg, observation_space, *a, **kw)
        world_model, actor, critic = built[:3]

        def count(module) -> int:
            return sum(p.numel() for p in module.parameters())

        rec["observation_space"] = str(observation_space)
        rec["actions_dim"] = [int(a) for a in actions_dim]
        rec["params"] = {"world_model": count(world_model), "actor": count(actor), "critic": count(critic)}
        wm = getattr(world_model, "module", world_model)  # Fabric's wrapper
        for part, name in (("encoder", "encoder"), ("decoder", "observation_model"), ("rssm", "rssm"),
                           ("reward", "reward_model"), ("continue", "continue_model")):
            rec["params"][part] = count(getattr(wm, name))
        return built

    dv3.build_agent = recorded_build_agent

    main = dv3.main

    def timed_main(*a, **kw):
        out = main(*a, **kw)
        rec["t_end"] = time.perf_counter()
        return out

    # sheeprl's CLI looks the entry point up by name in the module when it runs
    dv3.main = timed_main

    sys.argv = ["sheeprl", *overrides]
    run()

    result = {
        "version": metadata.version("sheeprl"), "torch": metadata.version("torch"),
        "gymnasium": metadata.version("gymnasium"), "minigrid": metadata.version("minigrid"),
        "threads": torch.get_num_threads(),
        "timed_env_steps": rec["ratio_calls"] - 1 if rec["ratio_calls"] else 0,
        "seconds": rec["t_end"] - rec["t_learning_start"] if "t_learning_start" in rec else None,
        "child_seconds": rec["t_end"] - t_process,
        "first_gradient_step_after": (rec["t_first_gradient_step"] - rec["t_learning_start"]
                                      if "t_first_gradient_step" in rec else None),
        **{k: rec[k] for k in ("gradient_steps", "gradient_steps_timed", "train_seconds", "observation_space",
                               "actions_dim",
                               "params") if k in rec},
    }
    Path(os.environ["SHEEPRL_BENCH_RESULT"]).write_text(json.dumps(result))


# ----------------------------------------------------------------------------- parent

def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def benchmark(args: argparse.Namespace) -> dict:
    python = _venv_python(args.venv)
    if not python.exists():
        raise RuntimeError(f"no venv at {args.venv}: run `python benchmarks/sheeprl_dreamer.py --setup` first")
    threads = args.threads or default_threads()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sheeprl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    configs = work / "configs"
    write_configs(configs, args, threads)
    result_path = work / "result.json"
    log_path = work / "sheeprl.log"
    overrides = [f"hydra.searchpath=[file://{configs}]", "exp=nextworld_bench",
                 f"log_root={work / 'logs' / 'runs'}", f"hydra.run.dir={work / 'logs' / 'hydra'}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1", "SHEEPRL_BENCH_RESULT": str(result_path), "SHEEPRL_BENCH_THREADS": str(threads)}
    cmd = [str(python), str(Path(__file__).resolve()), CHILD_FLAG, *overrides]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=work, env=env, check=False, stdout=None if args.verbose else log,
                              stderr=subprocess.STDOUT if not args.verbose else None)
    total = time.perf_counter() - start
    try:
        if proc.returncode != 0 or not result_path.exists():
            tail = log_path.read_text()[-4000:] if log_path.exists() and not args.verbose else "(see above)"
            raise RuntimeError(f"sheeprl exited with {proc.returncode}; command: {' '.join(cmd)} (cwd {work})\n"
                               f"--- last lines of its output ---\n{tail}")
        child = json.loads(result_path.read_text())
    finally:
        if not args.keep_workdir and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    seconds = child["seconds"]
    steps = child["timed_env_steps"]
    return {
        "framework": "sheeprl", "version": child["version"], "env_steps": steps,
        "seconds": round(seconds, 3), "env_steps_per_second": round(steps / seconds, 2),
        "timed": "from the end of the random learning_starts steps to the end of the run (policy steps + training)",
        "total_seconds": round(total, 3), "learning_starts": args.learning_starts,
        "train_ratio": args.train_ratio, "sheeprl_replay_ratio": replay_ratio(args),
        "gradient_steps": child["gradient_steps_timed"],
        # inside sheeprl's `train` (one gradient step: world model, imagination, actor, critic); the rest of
        # `seconds` is acting (player forward + env step), replay sampling and the loop's bookkeeping
        "train_seconds": round(child["train_seconds"], 3),
        "seconds_per_gradient_step": (round(child["train_seconds"] / child["gradient_steps_timed"], 4)
                                      if child["gradient_steps_timed"] else None),
        "replayed_steps_per_env_step": round(child["gradient_steps_timed"] * args.batch * args.seq_len / steps, 2),
        "model": {"cnn_channels": [args.cnn_multiplier * 2 ** i for i in range(4)], "deter": args.deter,
                  "hidden": args.hidden, "mlp_layers": args.mlp_layers, "stoch": args.stoch,
                  "classes": args.classes, "batch": args.batch, "seq_len": args.seq_len,
                  "params": child.get("params")},
        "threads": child["threads"], "env": args.env_id, "num_envs": 1, "action_repeat": 1,
        "sync_env": not args.async_env, "device": "cpu",
        "observation": (f"minigrid RGBImgObsWrapper(tile_size={args.tile_size}) + ImgObsWrapper: the full grid as "
                        f"env.render() draws it, {8 * args.tile_size}x{8 * args.tile_size} RGB, "
                        f"sheeprl space {child.get('observation_space')}"),
        "torch": child["torch"], "gymnasium": child["gymnasium"], "minigrid": child["minigrid"],
        "cpu_count": os.cpu_count(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--setup", action="store_true", help="create the venv and install sheeprl into it, then exit")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="sheeprl's venv ($NEXTWORLD_SHEEPRL_VENV)")
    p.add_argument("--python", default=sys.executable, help="interpreter that creates the venv (--setup)")
    p.add_argument("--env-steps", type=int, default=2000, help="timed env steps, after --learning-starts")
    p.add_argument("--learning-starts", type=int, default=1024, help="random steps that fill the buffer first")
    p.add_argument("--train-ratio", type=float, default=64, help="replayed steps per env step")
    p.add_argument("--env-id", default="MiniGrid-Empty-8x8-v0")
    p.add_argument("--tile-size", type=int, default=8, help="pixels per grid tile (8: 64x64 for an 8x8 grid)")
    p.add_argument("--cnn-multiplier", type=int, default=16, help="conv channels: 1, 2, 4, 8 times this")
    p.add_argument("--deter", type=int, default=256, help="recurrent (GRU) state size")
    p.add_argument("--hidden", type=int, default=256, help="dense units of every MLP")
    p.add_argument("--mlp-layers", type=int, default=2, help="hidden layers of the reward/continue/actor/critic")
    p.add_argument("--stoch", type=int, default=32, help="categorical variables of the stochastic state")
    p.add_argument("--classes", type=int, default=32, help="classes of each categorical")
    p.add_argument("--batch", type=int, default=16, help="sequences per batch")
    p.add_argument("--seq-len", type=int, default=64, help="steps per sequence")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: $OMP_NUM_THREADS, else all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--async-env", action="store_true", help="step the env in a subprocess (sheeprl's default)")
    p.add_argument("--json", type=Path, help="also write the result line to this file")
    p.add_argument("--workdir", help="where sheeprl runs and writes (unset: a temporary directory, removed after)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory (configs, log)")
    p.add_argument("--verbose", action="store_true", help="show sheeprl's output")
    args = p.parse_args(argv)
    if args.env_steps < 1 or args.learning_starts < args.seq_len:
        p.error("--env-steps must be positive and --learning-starts at least --seq-len "
                "(sheeprl trains once every env has a full sequence)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup:
        info = setup(args.venv, args.python)
        print(json.dumps(info))
        print(f"sheeprl {info['versions']['sheeprl']} with torch {info['versions']['torch']} in {info['venv']} "
              f"({info['setup_seconds']:.0f} s)")
        return 0
    try:
        result = benchmark(args)
    except Exception as exc:  # noqa: BLE001 - the failure is the result: reported, not hidden
        result = {"framework": "sheeprl", "error": str(exc)}
        print(json.dumps(result))
        print(f"sheeprl benchmark FAILED: {exc}", file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps(result) + "\n")
        return 1
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result) + "\n")
    print(f"sheeprl {result['version']} DreamerV3: {result['env_steps']:,} env steps in {result['seconds']:.1f} s = "
          f"{result['env_steps_per_second']:.2f} env steps/s (train ratio {result['train_ratio']:g}, "
          f"{result['threads']} threads, {result['total_seconds']:.1f} s in all)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD_FLAG:
        _child(sys.argv[2:])
    else:
        sys.exit(main())
