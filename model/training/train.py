"""Training loop: AdamW + cosine schedule with warmup, gradient accumulation to the effective batch,
clipping, validation NDCG@10 every epoch with best-checkpoint keeping and early stopping, resume from
the last checkpoint, a wall-clock budget, and DDP when launched by torchrun/accelerate (WORLD_SIZE > 1).

The loop reads top-down (nanoGPT-style): ``_setup`` builds everything a run works with (``_Run``) and
its counters (``TrainState``, restored from last.pt on resume); each epoch runs ``train_step`` per
optimiser step, then ``validate_and_checkpoint``; ``should_stop`` ends the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from model.evaluation.evaluate import evaluate_model
from model.methods.base import Method
from model.network.assembly import Assembled
from model.network.losses import log_prior
from model.network.model import SimGR
from model.progress import progress
from model.training.allocator import malloc_advice
from model.training.averaging import WeightAverage
from model.training.order import epoch_order, valid_sample
from model.training.precision import precision_advice, step_autocast
from model.training.processes import broadcast, dist_setup, seed_all
from model.training.run import (
    RunConfig,
    TrainState,
    atomic_save,
    build_from_config,
    check_resumable,
    resume_state,
    save_run_config,
)
from model.training.schedule import lr_factor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Run:
    """What one training run works with, fixed once ``_setup`` has built it."""

    cfg: RunConfig
    run_dir: Path
    method: Method
    built: Assembled
    net: torch.nn.Module  # the model, DDP-wrapped when world > 1
    optim: torch.optim.Optimizer
    params: list[torch.nn.Parameter]  # the trainable ones (clipping)
    windows: list[Any]  # this run's training examples
    sizes: np.ndarray  # (len(windows),) positions each example fills in a batch
    targets_per_micro: float  # mean loss targets per micro-batch: the weight of a micro-batch's mean loss
    valid: tuple[list[list[int]], list[int]]  # validation (histories, targets)
    device: torch.device
    rank: int
    world: int
    micro: int  # windows per forward
    accum: int  # forwards per optimiser step
    share_table: bool  # compute the (N, D) item table once per optimiser step, not once per forward
    ema: WeightAverage | None  # the averaged weights validated and kept, when TrainConfig.ema_decay > 0
    steps_per_epoch: int
    warmup: int  # warm-up steps of the LR schedule
    started: float  # time.monotonic() when this session started
    used_before: float  # training seconds of earlier sessions (resume)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.train.epochs

    @property
    def budget_s(self) -> float:
        return self.cfg.train.time_budget_min * 60

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def seconds_used(self) -> float:
        """Training seconds of the whole run so far, the same on every rank."""
        return broadcast(self.used_before + time.monotonic() - self.started, self.device)


class EpochResult(NamedTuple):
    loss: float  # mean training loss over the epoch's forwards
    samples_per_s: float  # targets per second over all ranks
    started: float  # time.monotonic() at the epoch's start
    out_of_time: bool  # the wall-clock budget ended the epoch early


def _setup(cfg: RunConfig, run_dir: Path, *, resume: bool) -> tuple[_Run, TrainState]:
    rank, world, device = dist_setup()
    tc = cfg.train
    if resume:  # before any work, and before config.json is rewritten
        check_resumable(run_dir, cfg)
    seed_all(tc.seed)
    loaded = build_from_config(cfg)
    method, built, data = loaded.method, loaded.built, loaded.data
    model = built.model.to(device)
    if rank == 0:
        save_run_config(run_dir, cfg)
        built.tokenizer.save_pretrained(run_dir / "tokenizer")
    sequences = (data.sequences if cfg.final else data.train_sequences())[: tc.max_users or None]  # final: tails too
    windows = [w for s in sequences for w in method.examples(s, built, stride=tc.window_stride)]
    valid_h, valid_t = data.eval_examples("valid", max_history=cfg.prompt.max_history)
    micro = min(tc.micro_batch_size, tc.batch_size)
    accum = max(1, tc.batch_size // (micro * world))
    steps_per_epoch = max(1, len(windows) // world // (micro * accum))
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    if isinstance(model, SimGR) and cfg.model.loss == "sampled":  # in-batch negatives' log p(item)
        model.item_log_prior.copy_(log_prior(data.popularity()))
    # one item table per step; not under DDP, which all-reduces inside each backward
    share = isinstance(model, SimGR) and accum > 1 and world == 1 and cfg.model.loss == "full"
    ema = WeightAverage(params, decay=tc.ema_decay) if tc.ema_decay else None
    state = resume_state(run_dir, model, optim, ema, resume=resume, rank=rank, device=device)
    run = _Run(cfg=cfg, run_dir=run_dir, method=method, built=built,
               net=DistributedDataParallel(model) if world > 1 else model, optim=optim, params=params,
               windows=windows, sizes=np.array([method.size(w, built) for w in windows], dtype=np.int64),
               targets_per_micro=max(1.0, sum(method.n_targets(w) for w in windows) * micro / max(1, len(windows))),
               valid=valid_sample(valid_h[: tc.max_users or None], valid_t[: tc.max_users or None], tc.valid_users),
               device=device, rank=rank, world=world, micro=micro, accum=accum, share_table=share, ema=ema,
               steps_per_epoch=steps_per_epoch,
               warmup=max(1, int(tc.warmup_ratio * steps_per_epoch * tc.epochs)), started=time.monotonic(),
               used_before=state.train_seconds)
    return run, state


def _set_lr(run: _Run, state: TrainState, used: float) -> None:
    tc = run.cfg.train
    lr = tc.lr * lr_factor(step=state.step, total=run.total_steps, warmup=run.warmup,
                           budget_fraction=used / run.budget_s if run.budget_s else 0.0)
    for group in run.optim.param_groups:
        group["lr"] = lr


def train_step(run: _Run, state: TrainState, order: list[int], step: int) -> tuple[float, int, int]:
    """One optimiser step over ``accum`` micro-batches of ``order``; returns (loss sum, forwards, targets).
    Each micro-batch's mean loss is weighted by its share of targets, so every target weighs the same
    whatever the size of the batch it lands in (size-pooled batches hold 1 to 20 targets per window);
    clipping bounds the step's mean gradient per target, so it keeps the step's weight too.
    ``share_table``: the micro-batches score a detached item table whose gradient one backward carries on."""
    autocast = step_autocast(run.cfg.train.autocast, run.device)
    run.optim.zero_grad(set_to_none=True)
    with autocast:
        table = run.built.model.item_embeddings() if run.share_table else None  # (N, D), graph to weights
    leaf = table.detach().requires_grad_() if table is not None else None
    loss_sum, seen = 0.0, 0
    for a in range(run.accum):
        chunk = order[(step * run.accum + a) * run.micro:(step * run.accum + a + 1) * run.micro]
        batch = run.method.collate([run.windows[i] for i in chunk], run.built).to(run.device)
        with autocast:
            _, loss = run.net(batch) if leaf is None else run.net(batch, item_table=leaf)
        assert loss is not None
        n = sum(run.method.n_targets(run.windows[i]) for i in chunk)
        (loss * (n / run.targets_per_micro) / run.accum).backward()
        loss_sum += loss.item()
        seen += n
    if table is not None and leaf is not None and leaf.grad is not None:
        table.backward(leaf.grad)  # the accumulated table gradient, into the embedding rows once
    weight = seen / (run.targets_per_micro * run.accum)  # this step's targets against an average step's
    torch.nn.utils.clip_grad_norm_(run.params, run.cfg.train.grad_clip * weight)
    run.optim.step()
    if run.ema is not None:
        run.ema.update()
    state.step += 1
    return loss_sum, run.accum, seen


def _train_epoch(run: _Run, state: TrainState) -> EpochResult:
    """Steps until the epoch's windows are used up or the wall-clock budget is spent."""
    tc = run.cfg.train
    run.net.train()
    order = epoch_order(run.sizes, seed=tc.seed, epoch=state.epoch, rank=run.rank, world=run.world,
                        micro=run.micro, pool=tc.size_pool)
    t_epoch, seen, loss_sum, n_loss, out_of_time = time.monotonic(), 0, 0.0, 0, False
    bar = progress(range(run.steps_per_epoch), desc=f"epoch {state.epoch + 1}/{tc.epochs}")
    for step in bar:
        used = run.seconds_used() if run.budget_s else 0.0
        _set_lr(run, state, used)
        if run.budget_s and used > run.budget_s:
            out_of_time = True
            break
        step_loss, step_n, step_seen = train_step(run, state, order, step)
        loss_sum, n_loss, seen = loss_sum + step_loss, n_loss + step_n, seen + step_seen
        if hasattr(bar, "set_postfix"):
            rate = seen * run.world / max(1e-9, time.monotonic() - t_epoch)
            bar.set_postfix(loss=f"{loss_sum / n_loss:.4f}", samples_s=f"{rate:.0f}")
    rate = seen * run.world / max(1e-9, time.monotonic() - t_epoch)
    return EpochResult(loss=loss_sum / max(1, n_loss), samples_per_s=rate, started=t_epoch, out_of_time=out_of_time)


def _validate(run: _Run, state: TrainState, record: dict[str, Any], *, due: bool) -> None:
    """On rank 0: validate when due and keep best.pt on a gain (a final run keeps its last epoch)."""
    tc, model, best_path = run.cfg.train, run.built.model, run.run_dir / "checkpoints" / "best.pt"
    if run.rank == 0 and run.cfg.final:  # nothing held out to validate on: the last epoch is the model
        atomic_save({"model": model.state_dict(), "epoch": state.epoch, "valid": None}, best_path)
    elif run.rank == 0 and due:
        m = evaluate_model(run.method, run.built, *run.valid, batch_size=tc.eval_batch_size, device=run.device,
                           desc="valid")
        record.update({f"valid_{k}": m[k] for k in ("ndcg@10", "hr@10")})
        if m["ndcg@10"] > state.best:
            state.best, state.best_epoch, state.bad_epochs = m["ndcg@10"], state.epoch, 0
            atomic_save({"model": model.state_dict(), "epoch": state.epoch, "valid": m}, best_path)
        else:
            state.bad_epochs += 1


def validate_and_checkpoint(run: _Run, state: TrainState, done: EpochResult) -> None:
    """Validate when due (the averaged weights when TrainConfig.ema_decay > 0), keep best.pt on a gain, save
    last.pt and append the epoch to the log."""
    tc, epoch = run.cfg.train, state.epoch
    record: dict[str, Any] = {"epoch": epoch, "train_loss": done.loss, "train_samples_per_s": done.samples_per_s,
                              "lr": run.optim.param_groups[0]["lr"], "partial_epoch": done.out_of_time}
    due = epoch % tc.eval_every == 0 or done.out_of_time or epoch == tc.epochs
    with run.ema.swapped() if run.ema is not None else contextlib.nullcontext():
        _validate(run, state, record, due=due)
    state.bad_epochs = int(broadcast(float(state.bad_epochs), run.device))
    if run.rank == 0:
        extra: dict[str, Any] = {"rng": torch.get_rng_state()}
        if run.device.type == "cuda":
            extra["cuda_rng"] = torch.cuda.get_rng_state(run.device)
        if run.ema is not None:
            extra["ema"] = run.ema.state_dict()
        atomic_save({"model": run.built.model.state_dict(), "optim": run.optim.state_dict(),
                     "state": dataclasses.asdict(state), **extra}, run.last_path)
        record["seconds"] = round(time.monotonic() - done.started, 2)  # training + validation + saving
        with open(run.run_dir / "train_log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("epoch %d: %s", epoch, json.dumps(record))


def should_stop(run: _Run, state: TrainState, done: EpochResult) -> bool:
    """All epochs run, the budget spent, or ``patience`` validations in a row without a gain."""
    if state.bad_epochs >= run.cfg.train.patience:
        log.info("early stop: no validation gain for %d epochs", run.cfg.train.patience)
        return True
    return done.out_of_time or state.epoch >= run.cfg.train.epochs


def train(cfg: RunConfig, run_dir: Path, *, resume: bool = True) -> dict[str, Any]:
    """Train ``cfg.method`` on ``cfg.data_dir`` into ``run_dir``; returns the summary (also in train_log.jsonl)."""
    run, state = _setup(cfg, run_dir, resume=resume)
    n_targets = sum(run.method.n_targets(w) for w in run.windows)
    log.info("training on %d windows (%d targets), %d steps/epoch, accum %d, world %d",
             len(run.windows), n_targets, run.steps_per_epoch, run.accum, run.world)
    log.info("%s", malloc_advice(run.device.type))
    log.log(*precision_advice(cfg.train.autocast, run.device.type))  # (level, line); the line holds no %
    out_of_time = False
    while state.epoch < cfg.train.epochs:
        if state.epoch and run.budget_s and run.seconds_used() > run.budget_s:
            out_of_time = True  # the last validation spent the budget: an epoch now would train no step
            break
        done = _train_epoch(run, state)
        state.epoch += 1
        state.train_seconds = run.used_before + time.monotonic() - run.started
        validate_and_checkpoint(run, state, done)
        out_of_time = done.out_of_time
        if should_stop(run, state, done):
            break
    summary = {"epochs": state.epoch, "best_valid_ndcg@10": state.best, "best_epoch": state.best_epoch,
               "minutes": round((time.monotonic() - run.started) / 60, 2), "windows": len(run.windows),
               "targets": n_targets, "out_of_time": out_of_time,
               "still_improving": out_of_time and state.best_epoch == state.epoch}  # the budget, not the model, ended it
    if summary["still_improving"]:
        log.warning("the time budget ended training at epoch %d with validation NDCG@10 still rising (best at "
                    "that last epoch): a longer budget would likely score higher", state.epoch)
    if dist.is_initialized():
        dist.barrier()
    return summary
