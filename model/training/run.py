"""A training run directory: its config, checkpoints and how to rebuild the model from them.

RUN_DIR/
  config.json          RunConfig: {"data_dir", "method", "model", "prompt", "train", "baseline"}
  train_log.jsonl      one line per epoch
  checkpoints/last.pt  model + optimiser + schedule + counters (resume)
  checkpoints/best.pt  model weights of the best validation epoch
  metrics_<split>.json written by evaluation
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch
from pydantic import with_config

from model.config import (
    STRICT_FIELDS,
    BaselineConfig,
    ModelConfig,
    PromptConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from model.data.dataset import Dataset
from model.data.jsonio import read_validated
from model.errors import SimGRError
from model.methods.base import Method
from model.network.assembly import Assembled
from model.semantic_ids.assign import load_semantic_ids
from model.semantic_ids.quantizer import QUANTIZER_DIR, find_quantizer
from model.training.averaging import WeightAverage
from model.training.registry import get_method

log = logging.getLogger(__name__)


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    data_dir: str  # the prepared dataset (with semantic_ids.json)
    method: str = "simgr"  # simgr, or a baseline registered in model/methods
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)  # backbone, LoRA, aggregator, tau
    prompt: PromptConfig = dataclasses.field(default_factory=PromptConfig)  # history -> model input
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)  # optimiser, batches, stopping
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)  # beam size, Latte, SASRec
    final: bool = False  # train on every interaction (valid and test tails too), no validation: the deployed model
    from_run: str | None = None  # final only: the validated run whose best epoch count and metrics it takes

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_json(cls, d: Any, *, origin: str | Path = "run config") -> RunConfig:
        """Parsed config.json -> RunConfig; missing sections keep their defaults, unknown fields are errors."""
        return from_dict(cls, d, origin=origin, what="run config")


class LoadedRun(NamedTuple):
    cfg: RunConfig
    data: Dataset
    sids: list[list[str]]
    built: Assembled
    method: Method


def save_run_config(run_dir: Path, cfg: RunConfig) -> None:
    """Write config.json and carry the dataset's item quantizer into the run (export takes it from here)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    src = find_quantizer(Path(cfg.data_dir))
    if src is not None and src.resolve() != (run_dir / QUANTIZER_DIR).resolve():
        shutil.rmtree(run_dir / QUANTIZER_DIR, ignore_errors=True)
        shutil.copytree(src, run_dir / QUANTIZER_DIR)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_json(), indent=2, sort_keys=True) + "\n")


def load_run_config(run_dir: Path) -> RunConfig:
    return read_validated(run_dir / "config.json", RunConfig, what="run config",
                          missing="not a training run (config.json missing); run `simgr train` first")


# Fields that change how fast a run goes, not what it learns: a resumed run may change them.
RESUMABLE_CHANGES = frozenset({"train.eval_batch_size", "train.num_workers"})


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def config_changes(saved: RunConfig, new: RunConfig) -> list[str]:
    """``field: old -> new`` for every setting ``new`` changes from ``saved`` that shapes what a run learns
    (the dataset compared by its resolved path)."""
    old, cur = _flat(saved.to_json()), _flat(new.to_json())
    for d in (old, cur):
        d["data_dir"] = str(Path(d["data_dir"]).resolve())
    return [f"{k}: {old.get(k)!r} -> {cur.get(k)!r}" for k in sorted(old.keys() | cur.keys())
            if k not in RESUMABLE_CHANGES and old.get(k) != cur.get(k)]


def check_resumable(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse to resume ``run_dir`` under a config other than the one it trained under: its weights, optimiser
    and schedule would continue under the new settings, and config.json would no longer say how they were made."""
    if not ((run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "config.json").is_file()):
        return
    changes = config_changes(load_run_config(run_dir), cfg)
    if changes:
        raise SimGRError(f"{run_dir}: holds a run trained under another config ({'; '.join(changes)}); resuming "
                         "would continue it under this one: train into another directory, or start afresh there "
                         "(simgr train --no-resume)")


def build_from_config(cfg: RunConfig) -> LoadedRun:
    data = Dataset.load(Path(cfg.data_dir))
    sids = load_semantic_ids(Path(cfg.data_dir), [it.item_id for it in data.items])
    method = get_method(cfg.method)
    return LoadedRun(cfg, data, sids, method.build(cfg, sids), method)


def load_run(run_dir: Path, *, checkpoint: str = "best") -> LoadedRun:
    """Rebuild the run's model and load ``checkpoints/<checkpoint>.pt`` into it."""
    cfg = load_run_config(run_dir)
    loaded = build_from_config(cfg)
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise SimGRError(f"{path}: checkpoint missing; has `simgr train` finished an epoch?")
    loaded.built.model.load_state_dict(load_checkpoint(path, device="cpu")["model"])
    return loaded


@dataclasses.dataclass
class TrainState:
    """The counters saved in last.pt next to the weights, so a resumed run continues where it stopped."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps taken (drives the LR schedule)
    best: float = -1.0  # best validation NDCG@10 so far
    best_epoch: int = -1  # the epoch that reached it (best.pt)
    bad_epochs: int = 0  # validations in a row without a gain (early stopping)
    train_seconds: float = 0.0  # wall-clock training time over every session of the run


def resume_state(run_dir: Path, model: torch.nn.Module, optim: torch.optim.Optimizer, ema: WeightAverage | None,
                 *, resume: bool, rank: int, device: torch.device) -> TrainState:
    """Counters (and weights + optimiser) from last.pt when resuming; a fresh run starts a fresh log."""
    last_path = run_dir / "checkpoints" / "last.pt"
    if not (resume and last_path.is_file()):
        if rank == 0:
            (run_dir / "train_log.jsonl").unlink(missing_ok=True)
        return TrainState()
    ckpt = load_checkpoint(last_path, device=device)
    model.load_state_dict(ckpt["model"])
    optim.load_state_dict(ckpt["optim"])
    if ema is not None:
        ema.load_state_dict(ckpt["ema"])
    state = TrainState(**ckpt["state"])
    if "rng" in ckpt:  # dropout masks continue the interrupted run's stream: a resumed run equals an unbroken one
        torch.set_rng_state(ckpt["rng"].cpu())
    if "cuda_rng" in ckpt and device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), device)
    log.info("resumed from %s at epoch %d", last_path, state.epoch)
    return state


def load_checkpoint(path: Path, *, device: torch.device | str) -> dict[str, Any]:
    """A checkpoint written by ``atomic_save``: tensors, numbers, strings and containers only, so it loads
    with ``weights_only=True`` (no pickled code runs)."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise SimGRError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise SimGRError(f"{path}: not a SimGR checkpoint (no model weights)")
    return ckpt


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temp file and rename, so a kill never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def best_epoch(run_dir: Path) -> int:
    """The epoch whose weights a validated run kept as best (from checkpoints/best.pt)."""
    path = run_dir / "checkpoints" / "best.pt"
    if not path.is_file():
        raise SimGRError(f"{path}: missing; --from-run needs a run that finished a validated epoch")
    if load_run_config(run_dir).final:
        raise SimGRError(f"{run_dir}: a --final run has no validation; name the validated run it came from")
    epoch = torch.load(path, map_location="cpu", weights_only=False).get("epoch")
    if not isinstance(epoch, int) or epoch < 1:
        raise SimGRError(f"{path}: records no best epoch")
    return epoch


def final_config(from_run: Path, data_dir: Path | None) -> RunConfig:
    """The validated run's config, trained for its best epoch count on all of ``data_dir`` (default: its data)."""
    validated = load_run_config(from_run)
    epochs = best_epoch(from_run)
    return dataclasses.replace(validated, data_dir=str(data_dir) if data_dir else validated.data_dir, final=True,
                               from_run=str(from_run), train=dataclasses.replace(validated.train, epochs=epochs))

