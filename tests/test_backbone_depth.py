"""A preset's depth as a setting (``ModelConfig.layers``): the blocks built, the refusal on a checkpoint, and
a trained run that keeps its depth through evaluation and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import TINY

from model.config import ModelConfig
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.network.backbone import PRESETS, build_backbone
from model.training.run import RunConfig, load_run
from service.cli.main import main

SIDS = ["<a_0>", "<a_1>"]


def _blocks(model: torch.nn.Module) -> int:
    return sum(1 for name, _ in model.named_modules() if name.rsplit(".", 1)[-1].isdigit()
               and name.rsplit(".", 2)[-2] == "layers")


def test_layers_sets_the_number_of_blocks_and_nothing_else() -> None:
    default, _ = build_backbone(ModelConfig(backbone="tiny"), SIDS)
    deeper, _ = build_backbone(ModelConfig(backbone="tiny", layers=5), SIDS)
    assert _blocks(default) == PRESETS["tiny"].num_hidden_layers == 2
    assert _blocks(deeper) == deeper.config.num_hidden_layers == 5
    for key in ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size"):
        assert getattr(deeper.config, key) == getattr(default.config, key)


def test_layers_on_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SimGRError, match="keeps its own"):
        build_backbone(ModelConfig(backbone=str(tmp_path), layers=3), SIDS)


def test_negative_layers_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SimGRError, match="layers"):
        RunConfig.from_json({"data_dir": str(tmp_path), "model": {"backbone": "tiny", "layers": -1}},
                            origin="test")


def test_a_deeper_run_keeps_its_depth_through_evaluation_and_export(
        synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--epochs", "1",
                 "--layers", "3", *TINY]) == 0
    assert json.loads((run / "config.json").read_text())["model"]["layers"] == 3
    assert _blocks(load_run(run).built.model.backbone) == 3
    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 0
    capsys.readouterr()
    assert _blocks(Bundle.load(bundle).model) == 3
