"""One validation layer: every config and file format is a pydantic schema that forbids unknown fields,
and a bad value is a one-line SimGRError naming the file, the field and the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from model.analysis.config import load_compare_config
from model.config import ModelConfig, TrainConfig
from model.data.dataset import Dataset
from model.data.prepare import prepare_dataset
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.export.integrity import seal_bundle
from model.training.run import RunConfig, load_checkpoint, load_run_config, save_run_config
from service.cli.main import main


def test_run_config_round_trips_and_restores_tuples(tmp_path: Path) -> None:
    cfg = RunConfig(data_dir="d", model=ModelConfig(lora_target_modules=("q_proj",)), train=TrainConfig(epochs=2))
    save_run_config(tmp_path, cfg)
    again = load_run_config(tmp_path)
    assert again == cfg
    assert again.model.lora_target_modules == ("q_proj",)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"data_dir": "d", "train": {"epoch": 3}}, r"config.json: train.epoch: unknown run config field$"),
        ({"data_dir": "d", "typo": 1}, r"config.json: typo: unknown run config field$"),
        ({"data_dir": "d", "model": {"aggregator": "max"}},
         r"config.json: model.aggregator: Input should be 'mean', 'concat', 'proj', 'attention' or 'gating' "
         r"\(got 'max'\)$"),
        ({"data_dir": "d", "train": {"epochs": "many"}}, r"config.json: train.epochs: Input should be a valid integer"),
        ({"model": {}}, r"config.json: data_dir: required field missing$"),
        ({"data_dir": "d", "model": {"smoothing_prefix": 1}},
         r"config.json: model: smoothing_prefix says where label smoothing spreads: set label_smoothing too$"),
        ([1], r"config.json: \(top level\): expected a JSON object, got an array$"),
    ],
)
def test_run_config_errors_name_file_field_and_problem(tmp_path: Path, config: object, message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SimGRError, match=message):
        load_run_config(tmp_path)


def test_cli_refuses_a_choice_the_config_does_not_have(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "d", "--out", "o", "--aggregator", "max"])
    assert e.value.code == 2
    assert "argument --aggregator: invalid choice: 'max'" in capsys.readouterr().err


def test_dataset_json_is_validated(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "T.inter.json").write_text(json.dumps({"u": [1, 2, 3], "v": [2, 3, 1]}))
    info = prepare_dataset(source="lcrec", input_path=raw, out_dir=tmp_path / "d")
    assert Dataset.load(tmp_path / "d").info.model_dump() == info
    for change, message in (({"n_user": 2}, r"dataset.json: n_user: unknown dataset.json field$"),
                            ({"n_users": "two"}, r"dataset.json: n_users: Input should be a valid integer")):
        (tmp_path / "d" / "dataset.json").write_text(json.dumps({**info, **change}))
        with pytest.raises(SimGRError, match=message):
            Dataset.load(tmp_path / "d")


def test_lcrec_item_file_forbids_unknown_fields(tmp_path: Path) -> None:
    (tmp_path / "T.inter.json").write_text(json.dumps({"u": [1, 2, 3]}))
    (tmp_path / "T.item.json").write_text(json.dumps({"1": {"title": "A", "prize": 3}}))
    with pytest.raises(SimGRError, match=r"T.item.json: 1.prize: unknown LC-Rec item field$"):
        prepare_dataset(source="lcrec", input_path=tmp_path, out_dir=tmp_path / "d")
    (tmp_path / "T.item.json").write_text(json.dumps({"1": {"title": ["A"]}}))
    with pytest.raises(SimGRError, match=r"T.item.json: 1.title: Input should be a valid string"):
        prepare_dataset(source="lcrec", input_path=tmp_path, out_dir=tmp_path / "d")
    (tmp_path / "T.item.json").unlink()
    (tmp_path / "T.index.json").write_text(json.dumps({"1": []}))
    with pytest.raises(SimGRError, match=r"T.index.json: 1: List should have at least 1 item"):
        prepare_dataset(source="lcrec", input_path=tmp_path, out_dir=tmp_path / "d")
    assert not (tmp_path / "d" / "dataset.json").exists()


def test_recbole_header_types_are_recboles_four(tmp_path: Path) -> None:
    (tmp_path / "bad.inter").write_text("user_id:token\titem_id:tokn\nu\ti\n")
    with pytest.raises(SimGRError, match=r"bad.inter: header: 1.type: Input should be 'token', 'token_seq', "
                                         r"'float' or 'float_seq' \(got 'tokn'\)"):
        prepare_dataset(source="recbole", input_path=tmp_path, out_dir=tmp_path / "d")


def test_compare_config_types_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"eval_users": "all"}))
    with pytest.raises(SimGRError, match=r"c.json: eval_users: Input should be a valid integer"):
        load_compare_config(path)
    path.write_text(json.dumps({"beams": [10, 20]}))
    assert load_compare_config(path).beams == (10, 20)
    with pytest.raises(SimGRError, match=r"nowhere.json: compare config not found"):
        load_compare_config(tmp_path / "nowhere.json")


def test_bundle_network_spec_forbids_unknown_fields(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle_dir, root)
    spec = json.loads((root / "model" / "simgr.json").read_text())
    spec["model"]["temperature"] = 0.1
    (root / "model" / "simgr.json").write_text(json.dumps(spec))
    seal_bundle(root, rehash=True)  # a bundle written that way, not changed after export
    with pytest.raises(SimGRError, match=r"simgr.json: model.temperature: unknown network spec field$"):
        Bundle.load(root)


class _Payload:
    """Not a tensor, number or container: unpickling it would run this module's code."""


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    good, bad, torn = tmp_path / "good.pt", tmp_path / "bad.pt", tmp_path / "torn.pt"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 1, "valid": {"ndcg@10": 0.5}}, good)
    assert load_checkpoint(good, device="cpu")["valid"] == {"ndcg@10": 0.5}
    torch.save({"model": {}, "extra": _Payload()}, bad)
    with pytest.raises(SimGRError, match=r"bad.pt: not a readable checkpoint"):
        load_checkpoint(bad, device="cpu")
    torn.write_bytes(good.read_bytes()[:100])
    with pytest.raises(SimGRError, match=r"torn.pt: not a readable checkpoint"):
        load_checkpoint(torn, device="cpu")
