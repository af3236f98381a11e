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


def train(cfg: RunConfig, run_dir: Path, *, resume: bool = True) -> dict[str, Any]:  # noqa: C901
    """Train SimGR on ``cfg.data_dir`` into ``run_dir``; returns the summary (also in train_log.jsonl)."""
    rank, world, device = _dist_setup()
    tc = cfg.train
    _seed_all(tc.seed)
    loaded = build_from_config(cfg)
    method, built, data = loaded.method, loaded.built, loaded.data
    model = built.model.to(device)
    if rank == 0:
        save_run_config(run_dir, cfg)
        loaded.built.tokenizer.save_pretrained(run_dir / "tokenizer")

    sequences = data.sequences if cfg.final else data.train_sequences()  # final: the tails too
    if tc.max_users:
        sequences = sequences[: tc.max_users]
    windows = [w for s in sequences for w in method.examples(s, built, stride=tc.window_stride)]
    n_targets = sum(method.n_targets(w) for w in windows)
    valid_h, valid_t = data.eval_examples("valid", max_history=cfg.prompt.max_history)
    if tc.max_users:
        valid_h, valid_t = valid_h[: tc.max_users], valid_t[: tc.max_users]

    micro = min(tc.micro_batch_size, tc.batch_size)
    accum = max(1, tc.batch_size // (micro * world))
    steps_per_epoch = max(1, len(windows) // world // (micro * accum))
    total_steps = steps_per_epoch * tc.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    warmup = max(1, int(tc.warmup_ratio * total_steps))
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": -1, "bad_epochs": 0,
                             "train_seconds": 0.0}
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    if rank == 0 and not (resume and last_path.is_file()):
        (run_dir / "train_log.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
    if resume and last_path.is_file():
        ckpt = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        state = ckpt["state"]
        log.info("resumed from %s at epoch %d", last_path, state["epoch"])
    net: torch.nn.Module = DistributedDataParallel(model) if world > 1 else model
    log.info("training on %d windows (%d targets), %d steps/epoch, accum %d, world %d",
             len(windows), n_targets, steps_per_epoch, accum, world)

    t_start, out_of_time, used_before = time.monotonic(), False, float(state.get("train_seconds", 0.0))
    budget_s = tc.time_budget_min * 60
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    while state["epoch"] < tc.epochs and not out_of_time:
        epoch = state["epoch"]
        model.train()
        order = _epoch_order(len(windows), seed=tc.seed, epoch=epoch, rank=rank, world=world)
        t_epoch, seen, loss_sum, n_loss = time.monotonic(), 0, 0.0, 0
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}")
        for step in bar:
            used = _broadcast(used_before + time.monotonic() - t_start, device) if budget_s else 0.0
            lr = tc.lr * lr_factor(step=state["step"], total=total_steps, warmup=warmup,
                                   budget_fraction=used / budget_s if budget_s else 0.0)
            for group in optim.param_groups:
                group["lr"] = lr
            if budget_s and used > budget_s:
                out_of_time = True
                break
            optim.zero_grad(set_to_none=True)
            for a in range(accum):
                chunk = order[(step * accum + a) * micro:(step * accum + a + 1) * micro]
                batch = method.collate([windows[i] for i in chunk], built).to(device)
                with autocast:
                    _, loss = net(batch)
                assert loss is not None
                (loss / accum).backward()
                loss_sum, n_loss = loss_sum + loss.item(), n_loss + 1
                seen += sum(method.n_targets(windows[i]) for i in chunk)
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            optim.step()
            state["step"] += 1
            rate = seen * world / max(1e-9, time.monotonic() - t_epoch)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / n_loss:.4f}", samples_s=f"{rate:.0f}")
        state["epoch"] = epoch + 1
        state["train_seconds"] = used_before + time.monotonic() - t_start
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, n_loss),
                  "train_samples_per_s": seen * world / max(1e-9, time.monotonic() - t_epoch),
                  "lr": optim.param_groups[0]["lr"], "partial_epoch": out_of_time}
        should_eval = (epoch + 1) % tc.eval_every == 0 or out_of_time or state["epoch"] == tc.epochs
        if rank == 0 and cfg.final:  # nothing held out to validate on: the last epoch is the model
            atomic_save({"model": model.state_dict(), "epoch": epoch + 1, "valid": None}, best_path)
        elif rank == 0 and should_eval:
            m = evaluate_model(method, built, valid_h, valid_t, batch_size=tc.eval_batch_size,
                               device=device, desc="valid")
            record.update({f"valid_{k}": m[k] for k in ("ndcg@10", "hr@10")})
            if m["ndcg@10"] > state["best"]:
                state.update(best=m["ndcg@10"], best_epoch=epoch + 1, bad_epochs=0)
                atomic_save({"model": model.state_dict(), "epoch": epoch + 1, "valid": m}, best_path)
            else:
                state["bad_epochs"] += 1
        state["bad_epochs"] = int(_broadcast(float(state["bad_epochs"]), device))
        if rank == 0:
            atomic_save({"model": model.state_dict(), "optim": optim.state_dict(),
                         "state": state}, last_path)
            record["seconds"] = round(time.monotonic() - t_epoch, 2)
            with open(run_dir / "train_log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            log.info("epoch %d: %s", epoch + 1, json.dumps(record))
        if state["bad_epochs"] >= tc.patience:
            log.info("early stop: no validation gain for %d epochs", tc.patience)
            break
    summary = {"epochs": state["epoch"], "best_valid_ndcg@10": state["best"], "best_epoch": state["best_epoch"],
               "minutes": round((time.monotonic() - t_start) / 60, 2), "windows": len(windows),
               "targets": n_targets, "out_of_time": out_of_time}
    if dist.is_initialized():
        dist.barrier()
    return summary
