"""A preset's depth and width as settings (``ModelConfig.layers``, ``ModelConfig.width``): the blocks and
widths built, the refusal on a checkpoint, a trained run that keeps its size through evaluation and export,
and a random bundle sized without touching the shared presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import TINY

from model.config import ModelConfig
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.export.synthetic import make_random_bundle
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


@pytest.mark.parametrize(("width", "heads", "kv"), [(384, 6, 3), (320, 5, 1), (256, 4, 2), (40, 1, 1)])
def test_width_sets_the_hidden_size_with_64_wide_heads_and_a_4x_mlp(width: int, heads: int, kv: int) -> None:
    wider, _ = build_backbone(ModelConfig(backbone="tiny", width=width), SIDS)
    c = wider.config
    assert (c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size) == (
        width, heads, kv, 4 * width)
    assert c.num_hidden_layers == PRESETS["tiny"].num_hidden_layers
    assert wider.embed_tokens.weight.shape[1] == width
    h = wider(input_ids=torch.tensor([[0, 1, 2]])).last_hidden_state  # (1, 3, width): the heads fit
    assert h.shape == (1, 3, width)


def test_depth_and_width_together() -> None:
    p = PRESETS["large"].resized(layers=3, width=512)
    assert (p.num_hidden_layers, p.hidden_size, p.num_attention_heads) == (3, 512, 8)
    assert PRESETS["large"].resized() == PRESETS["large"]


@pytest.mark.parametrize(("size", "named"), [({"layers": 3}, "layers=3 sizes"), ({"width": 64}, "width=64 sizes"),
                                             ({"layers": 3, "width": 64}, "layers=3, width=64 sizes")])
def test_sizing_a_checkpoint_is_refused(tmp_path: Path, size: dict[str, int], named: str) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SimGRError, match="keeps its own size") as err:
        build_backbone(ModelConfig(backbone=str(tmp_path), **size), SIDS)
    assert str(err.value).startswith(named)


@pytest.mark.parametrize(("field", "value"), [("layers", -1), ("width", -8), ("width", 100)])
def test_a_bad_size_is_a_config_error(tmp_path: Path, field: str, value: int) -> None:
    with pytest.raises(SimGRError, match=field):
        RunConfig.from_json({"data_dir": str(tmp_path), "model": {"backbone": "tiny", field: value}},
                            origin="test")


def test_a_sized_random_bundle_leaves_the_presets_alone(tmp_path: Path) -> None:
    before = dict(PRESETS)
    make_random_bundle(tmp_path / "b", n_items=30, layers=3, dim=64)
    assert before == PRESETS
    bundle = Bundle.load(tmp_path / "b")
    assert _blocks(bundle.model) == 3
    assert bundle.model.backbone.config.hidden_size == 64
    assert bundle.encode_users([[0, 1]]).shape == (1, 64)


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
