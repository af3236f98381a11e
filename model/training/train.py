"""Training loop: AdamW + cosine schedule with warmup, gradient accumulation to the effective batch,
clipping, validation NDCG@10 every epoch with best-checkpoint keeping and early stopping, resume from
the last checkpoint, a wall-clock budget, and DDP when launched by torchrun/accelerate (WORLD_SIZE > 1).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from model.evaluation.evaluate import evaluate_model
from model.progress import progress
from model.training.run import RunConfig, atomic_save, build_from_config, save_run_config

log = logging.getLogger(__name__)


def _dist_setup() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(*, step: int, total: int, warmup: int, budget_fraction: float = 0.0) -> float:
    """Linear warmup, then cosine decay to 0 over the run. With a wall-clock budget the run's progress is
    max(steps done / total steps, time used / budget), so a budgeted run still anneals to its end.

    lr_factor(step=0, total=100, warmup=10) = 0.1; lr_factor(step=100, total=100, warmup=10) = 0.0"""
    if step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), budget_fraction)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _epoch_order(n: int, *, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's shard of a seeded permutation; every rank gets the same count (DDP needs it)."""
    perm = np.random.default_rng(seed + epoch).permutation(n)
    per_rank = n // world
    return perm[rank * per_rank:(rank + 1) * per_rank].tolist()


def _broadcast(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


@dataclass
class _Loop:
    """Everything one optimiser step needs."""

    net: torch.nn.Module  # the model, or its DDP wrapper
    model: torch.nn.Module
    method: Any
    built: Any
    optim: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    device: torch.device
    micro: int
    accum: int
    grad_clip: float
    share_table: bool  # compute the (N, D) item table once per step, not once per micro-batch
    world: int


def _optimizer_step(loop: _Loop, windows: list[Any], order: list[int], step: int) -> tuple[float, int, int]:
    """One optimiser step over ``accum`` micro-batches; returns (summed loss, micro-batches, targets seen).

    With ``share_table`` the item table is computed once, the micro-batches score against a detached copy
    whose gradient accumulates, and one backward pass carries that gradient into the embedding rows."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=loop.device.type == "cuda")
    loop.optim.zero_grad(set_to_none=True)
    table = leaf = None
    if loop.share_table:
        with autocast:
            table = loop.model.item_embeddings()  # type: ignore[operator]  # (N, D), graph to the weights
        leaf = table.detach().requires_grad_()
    loss_sum, seen = 0.0, 0
    for a in range(loop.accum):
        chunk = order[(step * loop.accum + a) * loop.micro:(step * loop.accum + a + 1) * loop.micro]
        batch = loop.method.collate([windows[i] for i in chunk], loop.built).to(loop.device)
        with autocast:
            _, loss = loop.net(batch) if leaf is None else loop.net(batch, item_table=leaf)
        assert loss is not None
        (loss / loop.accum).backward()
        loss_sum += loss.item()
        seen += sum(loop.method.n_targets(windows[i]) for i in chunk)
    if table is not None and leaf is not None and leaf.grad is not None:
        table.backward(leaf.grad)
    torch.nn.utils.clip_grad_norm_(loop.params, loop.grad_clip)
    loop.optim.step()
    return loss_sum, loop.accum, seen


def _item_log_prior(model: torch.nn.Module, counts: np.ndarray) -> None:
    """Sampled loss: log p(item) of in-batch negatives, from train-split frequencies (+1 smoothing)."""
    p = (counts.astype(np.float64) + 1.0) / (counts.sum() + len(counts))
    prior: torch.Tensor = model.item_log_prior  # type: ignore[assignment]  # (N,) buffer of SimGR
    prior.copy_(torch.from_numpy(np.log(p)).to(prior))


def _make_loop(cfg: RunConfig, loaded: Any, model: torch.nn.Module, *, n_windows: int, world: int,
               device: torch.device) -> tuple[_Loop, int]:
    """The optimiser, accumulation and table sharing for ``cfg``; returns (loop, steps per epoch)."""
    from model.network.model import SimGR

    tc = cfg.train
    micro = min(tc.micro_batch_size, tc.batch_size)
    accum = max(1, tc.batch_size // (micro * world))
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    is_simgr = isinstance(model, SimGR)
    if is_simgr and cfg.model.loss == "sampled":
        _item_log_prior(model, loaded.data.popularity())
    # DDP syncs gradients inside each backward, so a deferred table backward would miss the all-reduce
    share = is_simgr and accum > 1 and world == 1 and cfg.model.loss == "full"
    net: torch.nn.Module = DistributedDataParallel(model) if world > 1 else model
    loop = _Loop(net=net, model=model, method=loaded.method, built=loaded.built, optim=optim, params=params,
                 device=device, micro=micro, accum=accum, grad_clip=tc.grad_clip, share_table=share, world=world)
    return loop, max(1, n_windows // world // (micro * accum))


def train(cfg: RunConfig, run_dir: Path, *, resume: bool = True) -> dict[str, Any]:
    """Train SimGR on ``cfg.data_dir`` into ``run_dir``; returns the summary (also in train_log.jsonl)."""
    rank, world, device = _dist_setup()
    tc = cfg.train
    _seed_all(tc.seed)
    loaded = build_from_config(cfg)
    model = loaded.built.model.to(device)
    if rank == 0:
        save_run_config(run_dir, cfg)
        loaded.built.tokenizer.save_pretrained(run_dir / "tokenizer")
    sequences = loaded.data.train_sequences()
    if tc.max_users:
        sequences = sequences[: tc.max_users]
    windows = [w for s in sequences for w in loaded.method.examples(s, loaded.built, stride=tc.window_stride)]
    n_targets = sum(loaded.method.n_targets(w) for w in windows)
    valid = loaded.data.eval_examples("valid", max_history=cfg.prompt.max_history)
    if tc.max_users:
        valid = (valid[0][: tc.max_users], valid[1][: tc.max_users])
    loop, steps_per_epoch = _make_loop(cfg, loaded, model, n_windows=len(windows), world=world, device=device)
    state = _resume_state(run_dir, model, loop.optim, device, resume=resume, rank=rank)
    log.info("training on %d windows (%d targets), %d steps/epoch, accum %d, world %d",
             len(windows), n_targets, steps_per_epoch, loop.accum, world)
    t_start, used_before = time.monotonic(), float(state.get("train_seconds", 0.0))
    out_of_time = False
    while state["epoch"] < tc.epochs and not out_of_time:
        record, out_of_time = _epoch(loop, tc, windows, state, steps_per_epoch=steps_per_epoch, rank=rank,
                                     clock=(t_start, used_before))
        _end_epoch(loop, cfg, run_dir, state, record, valid, rank=rank, out_of_time=out_of_time)
        if state["bad_epochs"] >= tc.patience:
            log.info("early stop: no validation gain for %d epochs", tc.patience)
            break
    summary = {"epochs": state["epoch"], "best_valid_ndcg@10": state["best"], "best_epoch": state["best_epoch"],
               "minutes": round((time.monotonic() - t_start) / 60, 2), "windows": len(windows),
               "targets": n_targets, "out_of_time": out_of_time}
    if dist.is_initialized():
        dist.barrier()
    return summary


def _resume_state(run_dir: Path, model: torch.nn.Module, optim: torch.optim.Optimizer, device: torch.device, *,
                  resume: bool, rank: int) -> dict[str, Any]:
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": -1, "bad_epochs": 0,
                             "train_seconds": 0.0}
    last_path = run_dir / "checkpoints" / "last.pt"
    if rank == 0 and not (resume and last_path.is_file()):
        (run_dir / "train_log.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
    if resume and last_path.is_file():
        ckpt = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        state = ckpt["state"]
        log.info("resumed from %s at epoch %d", last_path, state["epoch"])
    return state


def _epoch(loop: _Loop, tc: Any, windows: list[Any], state: dict[str, Any], *, steps_per_epoch: int, rank: int,
           clock: tuple[float, float]) -> tuple[dict[str, Any], bool]:
    """One epoch of optimiser steps (or until the wall-clock budget runs out); returns (record, out of time)."""
    t_start, used_before = clock
    epoch, budget_s = state["epoch"], tc.time_budget_min * 60
    total_steps = steps_per_epoch * tc.epochs
    warmup = max(1, int(tc.warmup_ratio * total_steps))
    loop.model.train()
    order = _epoch_order(len(windows), seed=tc.seed, epoch=epoch, rank=rank, world=loop.world)
    t_epoch, seen, loss_sum, n_loss, out_of_time = time.monotonic(), 0, 0.0, 0, False
    bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}")
    for step in bar:
        used = _broadcast(used_before + time.monotonic() - t_start, loop.device) if budget_s else 0.0
        lr = tc.lr * lr_factor(step=state["step"], total=total_steps, warmup=warmup,
                               budget_fraction=used / budget_s if budget_s else 0.0)
        for group in loop.optim.param_groups:
            group["lr"] = lr
        if budget_s and used > budget_s:
            out_of_time = True
            break
        ls, nl, sn = _optimizer_step(loop, windows, order, step)
        loss_sum, n_loss, seen = loss_sum + ls, n_loss + nl, seen + sn
        state["step"] += 1
        rate = seen * loop.world / max(1e-9, time.monotonic() - t_epoch)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss_sum / max(1, n_loss):.4f}", samples_s=f"{rate:.0f}")
    state["epoch"] = epoch + 1
    state["train_seconds"] = used_before + time.monotonic() - t_start
    record = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, n_loss),
              "train_samples_per_s": seen * loop.world / max(1e-9, time.monotonic() - t_epoch),
              "lr": loop.optim.param_groups[0]["lr"], "partial_epoch": out_of_time, "_t0": t_epoch}
    return record, out_of_time


def _end_epoch(loop: _Loop, cfg: RunConfig, run_dir: Path, state: dict[str, Any], record: dict[str, Any],
               valid: tuple[list[list[int]], list[int]], *, rank: int, out_of_time: bool) -> None:
    """Validate, keep the best checkpoint, write last.pt and the log line."""
    tc = cfg.train
    t_epoch = record.pop("_t0")
    should_eval = state["epoch"] % tc.eval_every == 0 or out_of_time or state["epoch"] == tc.epochs
    if rank == 0 and should_eval:
        m = evaluate_model(loop.method, loop.built, valid[0], valid[1], batch_size=tc.eval_batch_size,
                           device=loop.device, desc="valid")
        record.update({f"valid_{k}": m[k] for k in ("ndcg@10", "hr@10")})
        if m["ndcg@10"] > state["best"]:
            state.update(best=m["ndcg@10"], best_epoch=state["epoch"], bad_epochs=0)
            atomic_save({"model": loop.model.state_dict(), "epoch": state["epoch"], "valid": m},
                        run_dir / "checkpoints" / "best.pt")
        else:
            state["bad_epochs"] += 1
    state["bad_epochs"] = int(_broadcast(float(state["bad_epochs"]), loop.device))
    if rank == 0:
        atomic_save({"model": loop.model.state_dict(), "optim": loop.optim.state_dict(), "state": state},
                    run_dir / "checkpoints" / "last.pt")
        record["seconds"] = round(time.monotonic() - t_epoch, 2)
        with open(run_dir / "train_log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("epoch %d: %s", state["epoch"], json.dumps(record))
