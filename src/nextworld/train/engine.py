"""``fit``: the one training loop every model family uses.

One optimizer step: this rank reads its rows of the global batch (ResumableBatchSampler,
so the clips of step s depend only on the seed and s), splits them into ``grad_accum``
micro-batches, and backpropagates each micro-batch's loss divided by ``grad_accum``;
since a model's loss is a mean over its clips and DDP averages gradients over ranks,
the step's gradient is that of the mean loss over the whole global batch. DDP syncs
gradients on the last micro-batch only (``no_sync`` before). Then: global-norm
clipping, AdamW at the scheduled learning rate.

Run directory (only rank 0 writes)::

    config.json, model.safetensors   the export (save_pretrained), at every checkpoint
    training_state/                  exact-resume state (see nextworld.train.checkpoint)
    metrics.jsonl, tb/               one record every ``log_every`` steps
    samples/                         whatever ``sample_fn`` writes at each checkpoint

A fresh run checkpoints step 0 at once, so every run directory that exists can be resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from nextworld.data.windows import ClipDataset, ResumableBatchSampler
from nextworld.errors import UserInputError
from nextworld.models.base import check_tensors_match, config_from_dict, config_to_dict, save_pretrained
from nextworld.train.checkpoint import (STATE_DIR, TrainingState, load_optimizer_state, load_training_state,
                                        read_state_json, recover, save_training_state)
from nextworld.train.config import TrainConfig
from nextworld.train.distributed import (DistContext, LossForward, any_rank, barrier, close_distributed,
                                         gather_to_main, init_distributed, mean_over_ranks)
from nextworld.train.interrupt import StopSignals, ignore_sigint_in_worker
from nextworld.train.metrics_log import MetricsLog, MetricsWindow
from nextworld.train.optim import build_optimizer, lr_at
from nextworld.train.progress import TrainProgress
from nextworld.train.rng import capture_rng, derive_seed, restore_rng, seed_everything

BatchPrep = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""``prepare(batch) -> batch``: turns a batch (already on the device) into the model's input,
under no_grad and before the batch is split into micro-batches; e.g. frozen earlier stages
that tokenize frames. It must be deterministic, or a resumed run is not exact."""

SampleFn = Callable[[nn.Module, int, Path], None]
"""``sample_fn(model, step, samples_dir)``: called on rank 0 at each checkpoint, in eval mode
under no_grad, with the random generators restored afterwards (sampling never changes training)."""


@dataclass
class FitResult:
    """What a call to :func:`fit` did."""

    steps: int
    """Optimizer steps done in total, counting those before a resume."""
    metrics: dict[str, float]
    """The last metrics record (empty if no step ever ran)."""
    seconds: float
    """Wall-clock seconds of this call."""
    interrupted: bool
    """Stopped by Ctrl-C or SIGTERM; a checkpoint was saved at ``steps``."""
    run_dir: Path
    """The run directory."""


def fit(model: nn.Module, family: str, data: ClipDataset, cfg: TrainConfig, run_dir: Path, *,
        resume: bool = False, extra_config: dict[str, Any] | None = None,
        sample_fn: SampleFn | None = None, prepare: BatchPrep | None = None) -> FitResult:
    """Train ``model`` on ``data`` for ``cfg.steps`` optimizer steps, checkpointing into ``run_dir``.

    Args:
        model: an nn.Module with ``.config`` (a dataclass) and ``loss(batch) -> (loss,
            metrics)``, the loss a mean over the batch's clips (see models.base.Trainable).
            It is moved to the device and trained in place.
        family: the registered family name written into config.json.
        data: the clips; a batch is their items stacked (frames stay uint8).
        cfg: optimisation, logging and device settings. On resume the given cfg is used;
            pass the saved one (``saved_train_config``) for an exact continuation.
        run_dir: must be absent or empty unless ``resume``.
        resume: continue from ``run_dir/training_state`` (same step, optimizer moments,
            schedule position, generators and batch order).
        extra_config: more top-level keys for config.json (e.g. the data spec).
        sample_fn: see :data:`SampleFn`.
        prepare: see :data:`BatchPrep`.

    Raises:
        UserInputError: a non-empty run_dir without ``resume``; ``resume`` without a
            training state, from a malformed one, or with another family, model config,
            data, seed or global batch size than the run was trained with.

    Under torchrun every process calls fit with the same arguments (see
    nextworld.train.distributed). A second Ctrl-C raises KeyboardInterrupt without saving,
    except under torchrun, which forwards each Ctrl-C itself and SIGKILLs its workers 30 s
    after the first.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    ctx = init_distributed(cfg.device)
    try:
        cfg.check(ctx.world_size)
        data_info = {"num_items": len(data), "fingerprint": data_fingerprint(data)}
        state = _open_run_dir(run_dir, model, family, data_info, cfg, resume, ctx)
        trainer = _Trainer(model, family, cfg, ctx, run_dir, data_info, extra_config or {}, sample_fn, state,
                           prepare)
        start = 0 if state is None else state.step
        metrics: dict[str, float] = {} if state is None else state.meta["metrics"]
        loader = _loader(data, cfg, ctx, start)
        interrupted, step = False, start
        second_sigint_aborts = not ctx.launched_by_torchrun  # torchrun forwards the terminal's Ctrl-C again
        with (StopSignals(second_sigint_aborts) as stop,
              MetricsLog(run_dir, resumed_step=None if state is None else start, enabled=ctx.is_main) as log,
              TrainProgress(cfg.steps, start, cfg.progress and ctx.is_main) as bar):
            batches = iter(loader)
            # The generators are set last, so nothing between here and the first step draws from them.
            if state is None:
                seed_everything(derive_seed(cfg.seed, ctx.rank))
                trainer.checkpoint(0, metrics, samples=False)
            else:
                trainer.restore_rng(state, derive_seed(cfg.seed, ctx.rank, start))
            window = MetricsWindow()
            while step < cfg.steps and not interrupted:
                lr = lr_at(step, cfg)
                window.add(trainer.step(next(batches), lr, step))
                step += 1
                interrupted = any_rank(stop.requested, ctx)
                finished = interrupted or step == cfg.steps
                record = finished or step % cfg.log_every == 0
                if record:
                    metrics = _summarise(window, lr, cfg, ctx)
                    log.write(step, metrics)
                    bar.update(step, clips_per_second=metrics["perf/clips_per_second"],
                               loss=metrics["losses/loss"])
                else:
                    bar.update(step)
                if finished or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
                    trainer.checkpoint(step, metrics, samples=not interrupted)
                if record:
                    window.reset()  # after the checkpoint, so perf/ excludes saving time
        return FitResult(steps=step, metrics=metrics, seconds=time.perf_counter() - started,
                         interrupted=interrupted, run_dir=run_dir)
    finally:
        close_distributed(ctx)


def saved_train_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig a run's latest training state was trained with.

    Reads the state wherever an interrupted save left it, and moves nothing, so every
    process of a torchrun job may call it before :func:`fit`.
    """
    run_dir = Path(run_dir)
    saved = read_state_json(run_dir, required={"train": dict})
    return config_from_dict(TrainConfig, saved["train"], f"{run_dir}/{STATE_DIR}/state.json: train")


def data_fingerprint(data: ClipDataset) -> str:
    """sha256 over the dataset's shard file checksums and the clip index: equal iff the clips are.

    Cheap (the checksums are already in the dataset's metadata, nothing is re-read).
    """
    digest = hashlib.sha256()
    for shard in data.data.meta["shards"]:
        for name in sorted(shard["files"]):
            digest.update(f"{shard['name']}/{name}:{shard['files'][name]['sha256']}\n".encode())
    digest.update(np.ascontiguousarray(data.index, dtype=np.int64).tobytes())  # (clips, 2): episode, start row
    return digest.hexdigest()


# ---------------------------------------------------------------------------- setup


_META_KEYS: dict[str, type] = {"family": str, "model_config": dict, "train": dict, "metrics": dict, "data": dict,
                               "data.num_items": int, "data.seed": int, "data.global_batch": int}
"""What _Trainer.checkpoint puts in state.json and a resume reads."""


def _open_run_dir(run_dir: Path, model: nn.Module, family: str, data_info: dict[str, Any], cfg: TrainConfig,
                  resume: bool, ctx: DistContext) -> TrainingState | None:
    """Check run_dir against ``resume``; the training state to resume from, or None.

    A resume must continue the same run: same family, model config, data, seed and
    global batch (the last three fix which clips each step reads).
    """
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserInputError(f"{run_dir}: exists; pass --resume or choose another --out")
        barrier(ctx)  # every rank has looked before rank 0 writes
        return None
    barrier(ctx)  # every rank is done reading (saved_train_config) before rank 0 moves files
    if ctx.is_main:
        recover(run_dir)
    barrier(ctx)
    state = load_training_state(run_dir, required_meta=_META_KEYS)
    if state.meta["family"] != family:
        raise UserInputError(f"{run_dir}: a {state.meta['family']!r} run, cannot resume it as {family!r}")
    given = json.loads(json.dumps(config_to_dict(model.config)))
    saved = state.meta["model_config"]
    if given != saved:
        differ = sorted(k for k in given.keys() | saved.keys() if given.get(k) != saved.get(k))
        raise UserInputError(
            f"{run_dir}: its model config differs from the given one in {', '.join(differ)}; "
            "resume with the config the run was trained with")
    saved_data = state.meta["data"]
    if saved_data["num_items"] != data_info["num_items"]:
        raise UserInputError(
            f"{run_dir}: trained on {saved_data['num_items']} clips, the given data has {data_info['num_items']}; "
            "resume needs the same data")
    for field, saved_value, given in (("seed", saved_data["seed"], cfg.seed),
                                      ("batch_size", saved_data["global_batch"], cfg.batch_size)):
        if saved_value != given:
            raise UserInputError(
                f"{run_dir}: trained with train.{field} {saved_value}, the given config has {given}; "
                "resume needs the same (it fixes which clips each step reads)")
    saved_fingerprint = saved_data.get("fingerprint")  # absent from states saved before fingerprints
    if saved_fingerprint is not None and saved_fingerprint != data_info["fingerprint"]:
        raise UserInputError(
            f"{run_dir}: the given data differ from those it was trained on (data fingerprint "
            f"{data_info['fingerprint'][:12]}, saved {str(saved_fingerprint)[:12]}); resume needs the same data")
    check_tensors_match(model.state_dict(), state.model, run_dir / STATE_DIR / "model.safetensors",
                        against="the model config")
    return state


def _loader(data: ClipDataset, cfg: TrainConfig, ctx: DistContext, start: int) -> DataLoader:
    sampler = ResumableBatchSampler(len(data), cfg.batch_size, seed=cfg.seed, start_step=start,
                                    rank=ctx.rank, world_size=ctx.world_size)
    # A private generator for the workers' base seed: making the loader must not draw from
    # the global generator, or a resumed run would replay a different random stream.
    seed = int(np.random.SeedSequence([cfg.seed, ctx.rank, start]).generate_state(1)[0])
    return DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers,
                      pin_memory=ctx.device.type == "cuda", generator=torch.Generator().manual_seed(seed),
                      worker_init_fn=ignore_sigint_in_worker if cfg.num_workers else None)


def _summarise(window: MetricsWindow, lr: float, cfg: TrainConfig, ctx: DistContext) -> dict[str, float]:
    """The window's metrics averaged over steps and ranks, plus the engine's own."""
    metrics = mean_over_ranks(window.means(), ctx)
    seconds = window.seconds()
    metrics["charts/lr"] = lr
    metrics["perf/seconds_per_step"] = seconds / window.steps
    metrics["perf/clips_per_second"] = window.steps * cfg.batch_size / seconds
    return metrics


# ---------------------------------------------------------------------------- the step


class _Trainer:
    """The model, its optimizer and DDP wrapper, and what one step and one checkpoint do."""

    def __init__(self, model: nn.Module, family: str, cfg: TrainConfig, ctx: DistContext, run_dir: Path,
                 data_info: dict[str, Any], extra_config: dict[str, Any], sample_fn: SampleFn | None,
                 state: TrainingState | None, prepare: BatchPrep | None = None) -> None:
        self.model, self.family, self.cfg, self.ctx = model, family, cfg, ctx
        self.prepare = prepare
        self.run_dir, self.data_info = run_dir, data_info
        self.extra_config, self.sample_fn = extra_config, sample_fn
        self.device = ctx.device
        model.to(self.device).train()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, cfg, self.device)
        if state is not None:  # before DDP, which broadcasts rank 0's weights
            model.load_state_dict(state.model)
            load_optimizer_state(self.optimizer, state.optimizer, run_dir / STATE_DIR / "optimizer.safetensors")
        forward: nn.Module = LossForward(model)
        self.ddp: DistributedDataParallel | None = None
        if ctx.parallel:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = forward = DistributedDataParallel(forward, device_ids=device_ids)
        self.forward = torch.compile(forward) if cfg.compile else forward
        use_amp = cfg.amp and self.device.type == "cuda"
        self.autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext

    def step(self, batch: dict[str, torch.Tensor], lr: float, step: int) -> dict[str, Any]:
        """One optimizer step (number ``step``, from 0) on this rank's rows of the global batch; returns its metrics."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.prepare is not None:
            with torch.no_grad():
                batch = self.prepare(batch)
        n = self.cfg.grad_accum
        micro = self.cfg.batch_size // self.ctx.world_size // n
        totals: dict[str, Any] = {}
        for i in range(n):
            chunk = {k: v[i * micro:(i + 1) * micro] for k, v in batch.items()}
            sync = self.ddp.no_sync() if self.ddp is not None and i < n - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    loss, metrics = self.forward(chunk)
                (loss / n).backward()
            for key, value in {"losses/loss": loss, **metrics}.items():
                value = value.detach().float() if torch.is_tensor(value) else float(value)
                totals[key] = totals.get(key, 0.0) + value / n
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        totals["charts/grad_norm"] = nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        after_step = getattr(self.model, "after_optimizer_step", None)
        if after_step is not None:  # e.g. an EMA target encoder following its online encoder
            with torch.no_grad():
                after_step(step, self.cfg.steps)
        return totals

    def restore_rng(self, state: TrainingState, fallback_seed: int) -> None:
        """This rank's saved generator states, or ``fallback_seed`` for a rank the saved run did not have."""
        if self.ctx.rank < len(state.rng):
            restore_rng(state.rng[self.ctx.rank], self.device)
        else:
            seed_everything(fallback_seed)

    def checkpoint(self, step: int, metrics: dict[str, float], *, samples: bool) -> None:
        """Save training_state and the export (rank 0), then optionally samples; all ranks call it."""
        rng = gather_to_main(capture_rng(self.device), self.ctx)
        if self.ctx.is_main:
            meta = {"family": self.family, "model_config": config_to_dict(self.model.config),
                    "train": dataclasses.asdict(self.cfg), "extra_config": self.extra_config,
                    "data": {"sampler": "ResumableBatchSampler", "next_step": step, **self.data_info,
                             "global_batch": self.cfg.batch_size, "seed": self.cfg.seed},
                    "metrics": metrics}
            save_training_state(self.run_dir, TrainingState(step, self.model.state_dict(),
                                                            self.optimizer.state_dict(), rng, meta))
            save_pretrained(self.model, self.run_dir, self.family,
                            extra={"train": dataclasses.asdict(self.cfg), **self.extra_config})
            if samples and self.sample_fn is not None:
                self._sample(step)
        barrier(self.ctx)

    def _sample(self, step: int) -> None:
        rng = capture_rng(self.device)
        samples_dir = self.run_dir / "samples"
        samples_dir.mkdir(exist_ok=True)
        self.model.eval()
        try:
            with torch.no_grad():
                self.sample_fn(self.model, step, samples_dir)
        finally:
            self.model.train()
            restore_rng(rng, self.device)
