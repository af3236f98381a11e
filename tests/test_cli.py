"""CLI glue: flags generated from the config dataclasses, and the semantic-ids default for text-less data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.config import ModelConfig, PromptConfig, TrainConfig
from service.cli.main import _dataclass_from_args, build_parser, main


def test_train_flags_map_onto_configs() -> None:
    args = build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--backbone", "tiny", "--input-layout", "tokens", "--lora",
         "--lora-target-modules", "q_proj,v_proj", "--tau", "0.1", "--epochs", "3"])
    assert _dataclass_from_args(ModelConfig, args) == ModelConfig(
        backbone="tiny", lora=True, lora_target_modules=("q_proj", "v_proj"), tau=0.1)
    assert _dataclass_from_args(PromptConfig, args) == PromptConfig(layout="tokens")
    assert _dataclass_from_args(TrainConfig, args) == TrainConfig(epochs=3)


def test_bad_flag_value_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "--data", "d", "--out", "o", "--epochs", "many"])
    assert e.value.code == 2


def test_semantic_ids_default_to_given_ids_without_text(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "src"
    src.mkdir()
    seqs = {str(u): [(u + j) % 6 for j in range(5)] for u in range(6)}
    (src / "Toy.inter.json").write_text(json.dumps(seqs))
    sids = {str(i): [f"<a_{i % 2}>", f"<b_{i % 2}>", "<c_0>"] for i in range(6)}  # 2 tuples, 3 items each
    (src / "Toy.index.json").write_text(json.dumps(sids))
    data = tmp_path / "data"
    assert main(["prepare", "--source", "lcrec", "--input", str(src), "--out", str(data)]) == 0
    capsys.readouterr()
    assert main(["semantic-ids", "--data", str(data)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["source"] == "given"
    assert report["n_levels"] == 3
    written = json.loads((data / "semantic_ids.json").read_text())
    assert written["1"] == ["<a_1>", "<b_1>", "<c_0>"]
    assert len({tuple(v) for v in written.values()}) == 6  # unique after dedup


@pytest.mark.parametrize(("flags", "message"), [
    (["--label-smoothing", "1.5"], "simgr: error: command line: label_smoothing: Input should be less than 1 (got 1.5)"),
    (["--label-smoothing", "0.1", "--loss", "sampled"],
     "simgr: error: command line: label smoothing spreads over every item: it needs loss=full, not loss=sampled"),
    (["--smoothing-prefix", "1"],
     "simgr: error: command line: smoothing_prefix says where label smoothing spreads: set label_smoothing too"),
    (["--smoothing-prefix", "-1", "--label-smoothing", "0.1"],
     "simgr: error: command line: smoothing_prefix: Input should be greater than or equal to 0 (got -1)"),
])
def test_bad_label_smoothing_is_one_line_error(synthetic_data_dir: Path, tmp_path: Path, flags: list[str],
                                               message: str, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--backbone", "tiny", *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]
    assert not (run / "checkpoints").exists()
