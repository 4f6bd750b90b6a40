"""The one training loop every recipe shares.

AdamW with open_clip's betas/eps, linear warm-up then cosine decay (computed from the step, so the
schedule state is just the step; a param group's optional `lr_scale` multiplies it), optional gradient clipping, AMP on CUDA (bf16 when supported,
else fp16 with a grad scaler), gradient accumulation, DDP under torchrun, periodic checkpoints and
exact resume, metrics to CSV and TensorBoard, a rich progress bar.

Faults (docs/reliability.md): the run folder is locked to one writer; SIGINT/SIGTERM finish the
current optimizer step, write a checkpoint and raise `Interrupted` (exit 130/143); damaged shards
are skipped and counted (metrics.csv `skipped_samples`/`skipped_shards`, RUN/summary.json) until
more than `max_bad_fraction` of the samples are lost; disk-full / permission errors are one line.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from zss.errors import Interrupted, ZssError
from zss.trainer import distributed as D
from zss.trainer.checkpoints import list_checkpoints, load_newest_readable, rng_state, save_checkpoint, set_rng_state
from zss.trainer.config import RESOLVED_KEY, TrainConfig, effective_lr, lr_rule_text
from zss.trainer.data import Position, ShardStream, shards_from_manifest
from zss.trainer.recipe import Recipe
from zss.utils.config import dump_yaml
from zss.utils.device import default_device
from zss.utils.enverrors import environment_error, is_environment_error
from zss.utils.lock import FolderLock
from zss.utils.progress import progress_bar
from zss.utils.signals import StopRequest

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, base: float, warmup: float, min_ratio: float = 0.0) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then cosine to min_ratio."""
    n_warm = int(round(warmup * total))
    if n_warm > 0 and step < n_warm:
        return base * (step + 1) / n_warm
    span = max(1, total - n_warm)
    progress = min(1.0, (step - n_warm) / span)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to the device; floating tensors (float16 features) become float32 there."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if v.is_floating_point():
                v = v.float()
        out[k] = v
    return out


class _Metrics:
    """metrics.csv (rewritten up to the resumed step on resume) + TensorBoard, main process only."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if resume_step > 0 and self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        elif self.path.is_file():
            self.path.unlink()
        self.fields: list[str] = list(self.rows[0].keys()) if self.rows else []
        self._rewrite()
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def _rewrite(self) -> None:
        if not self.fields:
            return
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: f"{v:.8g}" for k, v in values.items()}}
        if not self.fields:
            self.fields = list(row.keys())
            self._rewrite()
        with open(self.path, "a", newline="") as f:
            if f.tell() == 0:
                csv.DictWriter(f, fieldnames=self.fields).writeheader()
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        self.rows.append(row)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW, fused when this torch build supports it on the device: one kernel over all
    parameters instead of a loop (≈6-9× faster on CPU, where the step over a 49k-row token
    embedding otherwise costs as much as a small tower's forward+backward)."""
    kwargs = dict(lr=effective_lr(cfg, 1) if lr is None else lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


def total_steps(cfg: TrainConfig, stream: ShardStream) -> int:
    """Optimizer steps from `steps`, else from `epochs` over this process's batches per epoch."""
    if cfg.steps:
        return int(cfg.steps)
    if cfg.epochs:
        return max(1, int(math.ceil(cfg.epochs * stream.batches_per_epoch(0) / cfg.accum_steps)))
    raise ZssError("give the run length: --steps N or --epochs E (or steps/epochs in the config)")


def train(recipe: Recipe, cfg: TrainConfig, run_dir: Path, resume: bool = False,
          resolved_config: dict[str, Any] | None = None) -> Path:
    """Train `recipe` into `run_dir`; returns the final model directory (`run_dir/model`).

    `resume=True` continues from the newest complete checkpoint exactly (same losses as an
    uninterrupted run on the same device); without it, a run directory holding checkpoints is
    refused rather than overwritten.
    """
    info = D.setup()
    run_dir = Path(run_dir)
    lock = FolderLock(run_dir, "zss train") if info.is_main else contextlib.nullcontext()
    try:
        with lock, StopRequest() as stop:
            return _train(recipe, cfg, run_dir, resume, resolved_config, info, stop)
    except OSError as exc:
        if is_environment_error(exc):
            raise environment_error(exc, run_dir) from exc
        raise


def _damage_check(stream: ShardStream, cfg: TrainConfig) -> None:
    """Stop with one line once more than `max_bad_fraction` of the samples were lost to damage."""
    lost, total = stream.damage.n_samples, stream.total_samples
    if lost and lost / total > cfg.max_bad_fraction:
        names = ", ".join(sorted(stream.damage.shards))
        raise ZssError(f"damaged shard(s) {names}: {lost} of {total} samples skipped ({lost / total:.1%}), "
                       f"more than max_bad_fraction={cfg.max_bad_fraction}; re-ingest them (see `zss inspect "
                       f"--verify`) or raise max_bad_fraction")


def _device(cfg: TrainConfig, info: D.DistInfo) -> torch.device:
    if torch.cuda.is_available() and info.world_size > 1:
        return torch.device("cuda", info.local_rank)
    return default_device(cfg.device)


def _existing_checkpoints(run_dir: Path, ckpt_dir: Path, resume: bool) -> list[int]:
    """The checkpoints in `ckpt_dir`; refused without `resume`, required with it."""
    existing = list_checkpoints(ckpt_dir)
    if existing and not resume:
        raise ZssError(f"{run_dir} already holds checkpoints; pass --resume to continue or use a new run dir")
    if resume and not existing:
        raise ZssError(f"--resume: no checkpoint found in {ckpt_dir}")
    return existing


@dataclass
class _Run:
    """One process's run while it steps: the model (and its DDP wrapper), optimizer, grad scaler,
    the shard stream, and where the run stands (optimizer steps taken, data position)."""

    recipe: Recipe
    cfg: TrainConfig
    info: D.DistInfo
    device: torch.device
    ckpt_dir: Path
    model: nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    stream: ShardStream
    n_steps: int
    step: int = 0
    position: Position = field(default_factory=Position)
    ddp: nn.Module | None = None
    trainable: list[nn.Parameter] = field(default_factory=list)

    def resume(self, existing: list[int]) -> None:
        """Continue exactly from the newest readable checkpoint: weights, optimizer, scaler, step,
        and this process's data position, RNG state and damage ledger."""
        last, state = load_newest_readable(self.ckpt_dir, existing, self.model, self.device)
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        mine = state["procs"].get(str(self.info.rank))
        if mine is None:
            raise ZssError(f"checkpoint step {last} was written by {len(state['procs'])} process(es); "
                           f"resume with the same number of processes")
        self.position = Position(**mine["data"])
        set_rng_state(mine["rng"])
        self.stream.damage.load(mine.get("damage", {}))

    def wrap(self) -> None:
        """DDP under torchrun (else the model itself); the parameters the optimizer clips."""
        self.ddp = self.model
        if self.info.world_size > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    def _accumulate(self, batches: Iterator[tuple[dict[str, Any], Position]]) -> dict[str, float]:
        """Forward and backward over `accum_steps` batches (DDP syncs on the last); their mean logs."""
        cfg, ddp = self.cfg, self.ddp
        assert ddp is not None
        sums: dict[str, float] = {}
        for micro in range(cfg.accum_steps):
            batch, self.position = next(batches)
            batch = _to_device(batch, self.device)
            sync = micro == cfg.accum_steps - 1 or self.info.world_size == 1
            ctx = contextlib.nullcontext() if sync else ddp.no_sync()
            with ctx:
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    loss, logs = self.recipe.loss(ddp, batch)
                self.scaler.scale(loss / cfg.accum_steps).backward()
            for k, v in {"loss": loss, **logs}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v) / cfg.accum_steps
        return sums

    def optimizer_step(self, batches: Iterator[tuple[dict[str, Any], Position]]) -> dict[str, float]:
        """One optimizer step at the scheduled learning rate; returns its values for the logs,
        averaged over the processes (loss terms, grad norm, lr, skipped samples and shards)."""
        cfg = self.cfg
        lr = lr_at(self.step, self.n_steps, effective_lr(cfg, self.info.world_size), cfg.warmup, cfg.min_lr_ratio)
        for g in self.opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        sums = self._accumulate(batches)
        self.scaler.unscale_(self.opt)
        if cfg.grad_clip > 0:
            sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.recipe.after_step(self.model, self.step)

        _damage_check(self.stream, cfg)
        values = D.all_reduce_mean(sums, self.device)
        values["lr"] = lr
        values["skipped_samples"] = self.stream.damage.n_samples
        values["skipped_shards"] = self.stream.damage.n_shards
        return values

    def checkpoint(self) -> None:
        _checkpoint(self.ckpt_dir, self.step, self.model, self.opt, self.scaler, self.position, self.info,
                    self.cfg.keep_checkpoints, self.stream.damage.state())


def _build(recipe: Recipe, cfg: TrainConfig, info: D.DistInfo, device: torch.device, ckpt_dir: Path) -> _Run:
    """The model (seeded by `cfg.seed`), optimizer, grad scaler and this process's shard stream."""
    torch.manual_seed(cfg.seed)
    model = recipe.build_model().to(device)
    opt = make_optimizer(recipe.param_groups(model, cfg.weight_decay), cfg, effective_lr(cfg, info.world_size))
    amp_dtype = _amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    stream = ShardStream(shards_from_manifest(recipe.shards, recipe.manifest),
                         decode=recipe.decode_sample, collate=recipe.collate,
                         batch_size=cfg.batch_size, seed=cfg.seed, rank=info.rank,
                         world_size=info.world_size, num_workers=cfg.num_workers,
                         shuffle_buffer=cfg.shuffle_buffer, members=recipe.members)
    return _Run(recipe, cfg, info, device, ckpt_dir, model, opt, scaler, amp_dtype, stream,
                total_steps(cfg, stream))


def _open_metrics(run_dir: Path, resolved_config: dict[str, Any] | None, run: _Run) -> _Metrics | None:
    """The main process's metrics (and config.yaml, when given); None on the others."""
    if not run.info.is_main:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg, world = run.cfg, run.info.world_size
    log.info("%s", lr_rule_text(cfg, world))
    if resolved_config is not None:  # the config as given, plus what the run computed from it
        resolved = {"lr": effective_lr(cfg, world), "lr_scaling": cfg.lr_scaling, "world_size": world}
        dump_yaml({**resolved_config, RESOLVED_KEY: resolved}, run_dir / "config.yaml")
    return _Metrics(run_dir, run.step, run.cfg.tensorboard)


class _Pace:
    """Steps per second: over the steps since the last metrics row, and a moving average for the bar."""

    def __init__(self, step: int) -> None:
        self.t_last, self.s_last = time.perf_counter(), step
        self.t_step, self.rate = self.t_last, None

    def since_log(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.s_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.s_last = now, step
        return rate

    def tick(self) -> float:
        now = time.perf_counter()
        dt = max(now - self.t_step, 1e-9)
        self.rate = 1.0 / dt if self.rate is None else 0.9 * self.rate + 0.1 / dt
        self.t_step = now
        return self.rate


def _train(recipe: Recipe, cfg: TrainConfig, run_dir: Path, resume: bool,
           resolved_config: dict[str, Any] | None, info: D.DistInfo, stop: StopRequest) -> Path:
    device = _device(cfg, info)
    ckpt_dir = run_dir / "checkpoints"
    existing = _existing_checkpoints(run_dir, ckpt_dir, resume)
    run = _build(recipe, cfg, info, device, ckpt_dir)
    if resume:
        run.resume(existing)
    else:
        torch.manual_seed(cfg.seed + 1 + info.rank)
    metrics = _open_metrics(run_dir, resolved_config, run)
    run.wrap()
    _run_steps(run, metrics, stop)
    return _finish(run, run_dir, metrics)


def _run_steps(run: _Run, metrics: _Metrics | None, stop: StopRequest) -> None:
    """Optimizer steps up to `n_steps`: logs, progress, periodic checkpoints; on SIGINT/SIGTERM a
    checkpoint and `Interrupted` (the data-loader workers stop with the loop, however it ends)."""
    cfg, info = run.cfg, run.info
    batches = run.stream.batches(run.position)
    bar = progress_bar(disable=None if info.is_main else True)
    pace = _Pace(run.step)
    with bar, contextlib.closing(run.stream):
        task = bar.add_task(f"train {run.recipe.name}", total=run.n_steps, completed=run.step, info="",
                            unit="steps", samples_per_unit=cfg.batch_size * cfg.accum_steps * info.world_size)
        while run.step < run.n_steps:
            values = run.optimizer_step(batches)
            step = run.step
            if metrics is not None and (step % cfg.log_every == 0 or step == run.n_steps or step == 1):
                values["steps_per_s"] = pace.since_log(step)
                metrics.log(step, values)
            bar.update(task, completed=step,
                       info=f"loss {values['loss']:.4f}  {pace.tick():.2f} steps/s  lr {values['lr']:.2e}")
            saved = step % cfg.ckpt_every == 0 or step == run.n_steps
            if saved:
                run.checkpoint()
            if _stop_requested(stop, info, run.device) and step < run.n_steps:
                if not saved:
                    run.checkpoint()
                if metrics is not None:
                    metrics.close()
                raise Interrupted(stop.exit_code, f"interrupted at step {step}; checkpoint saved; "
                                                  "re-run with --resume to continue")


def _finish(run: _Run, run_dir: Path, metrics: _Metrics | None) -> Path:
    """Export the model directory, close the metrics, write RUN/summary.json (main process)."""
    out = run_dir / "model"
    stream = run.stream
    if run.info.is_main:
        run.recipe.export(run.model, out)
        assert metrics is not None
        metrics.close()
        summary = {"recipe": run.recipe.name, "steps": run.n_steps, "model": str(out), **stream.damage.summary()}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if stream.damage.n_samples:
            log.warning(f"zss: warning: {stream.damage.n_samples} damaged sample(s) in "
                        f"{stream.damage.n_shards} shard(s) were skipped ({', '.join(sorted(stream.damage.shards))}); "
                        f"see {run_dir / 'summary.json'}")
    if D.is_distributed():
        torch.distributed.barrier()
    return out


def _stop_requested(stop: StopRequest, info: D.DistInfo, device: torch.device) -> bool:
    """Whether any process got SIGINT/SIGTERM (all processes stop at the same step)."""
    flag = stop.signum is not None
    if info.world_size > 1:
        t = torch.tensor([int(stop.signum or 0)], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        if int(t.item()) and stop.signum is None:
            stop.signum = int(t.item())
        flag = bool(t.item())
    return flag


def _checkpoint(ckpt_dir: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, position: Position, info: D.DistInfo, keep: int,
                damage: dict[str, Any] | None = None) -> None:
    """Gather every process's data position, RNG and damage ledger, then rank 0 writes the checkpoint."""
    mine = {"data": position.as_dict(), "rng": rng_state(), "damage": damage or {}}
    procs = {"0": mine}
    if info.world_size > 1:
        every: list[Any] = [None] * info.world_size
        torch.distributed.all_gather_object(every, mine)
        procs = {str(r): p for r, p in enumerate(every)}
    if info.is_main:
        state = {"step": step, "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                 "procs": procs}
        save_checkpoint(ckpt_dir, step, model, state, keep)
    if info.world_size > 1:
        torch.distributed.barrier()
