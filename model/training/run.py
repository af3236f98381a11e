"""A training run directory: its config, checkpoints and how to rebuild the model from them.

RUN_DIR/
  config.json          {"data_dir", "model": ModelConfig, "prompt": PromptConfig, "train": TrainConfig}
  train_log.jsonl      one line per epoch
  checkpoints/last.pt  model + optimiser + schedule + counters (resume)
  checkpoints/best.pt  model weights of the best validation epoch
  metrics_<split>.json written by evaluation
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch

from model.config import BaselineConfig, ModelConfig, PromptConfig, TrainConfig, from_dict, to_dict
from model.data.dataset import Dataset
from model.errors import SimGRError
from model.methods.base import Method
from model.network.assembly import Assembled
from model.semantic_ids.assign import load_semantic_ids
from model.semantic_ids.quantizer import QUANTIZER_DIR, find_quantizer
from model.training.registry import get_method


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    data_dir: str  # the prepared dataset (with semantic_ids.json)
    method: str = "simgr"  # simgr, or a baseline registered in model/methods
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    prompt: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)  # baseline-only settings (beam size, Latte, SASRec)

    def to_json(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, "method": self.method, "model": to_dict(self.model), "prompt": to_dict(self.prompt),
                "train": to_dict(self.train), "baseline": to_dict(self.baseline)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        return cls(data_dir=d["data_dir"], method=d.get("method", "simgr"), model=from_dict(ModelConfig, d.get("model", {})),
                   prompt=from_dict(PromptConfig, d.get("prompt", {})),
                   train=from_dict(TrainConfig, d.get("train", {})),
                   baseline=from_dict(BaselineConfig, d.get("baseline", {})))


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
    path = run_dir / "config.json"
    if not path.is_file():
        raise SimGRError(f"{path}: not a training run (config.json missing); run `simgr train` first")
    try:
        return RunConfig.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise SimGRError(f"{path}: malformed run config ({e})") from None


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
    state = torch.load(path, map_location="cpu", weights_only=False)
    loaded.built.model.load_state_dict(state["model"])
    return loaded


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temp file and rename, so a kill never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
