"""The weight average (model/training/averaging.py): known answers, the swap, and that a run with
``--ema-decay`` validates and keeps the average, not the last step's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.training.averaging import WeightAverage
from service.cli.main import main


def test_average_known_answers() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    avg = WeightAverage([p], decay=0.75)
    with torch.no_grad():
        p.copy_(torch.tensor([5.0, 2.0]))
    avg.update()  # 0.75 * [1, -2] + 0.25 * [5, 2]
    assert avg.shadow[0].tolist() == [2.0, -1.0]
    avg.update()  # 0.75 * [2, -1] + 0.25 * [5, 2]
    assert avg.shadow[0].tolist() == [2.75, -0.25]


def test_swapped_restores_the_trained_weights_even_on_error() -> None:
    p = torch.nn.Parameter(torch.tensor([4.0]))
    avg = WeightAverage([p], decay=0.5)
    with torch.no_grad():
        p.fill_(8.0)
    avg.update()
    with avg.swapped():
        assert p.item() == 6.0
    assert p.item() == 8.0
    with pytest.raises(RuntimeError), avg.swapped():
        raise RuntimeError("validation failed")
    assert p.item() == 8.0


def test_state_round_trip_and_mismatch() -> None:
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.ones(3))
    saved = WeightAverage([a], decay=0.9)
    restored = WeightAverage([b], decay=0.9)
    restored.load_state_dict(saved.state_dict())
    assert restored.shadow[0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="does not match"):
        WeightAverage([a, b], decay=0.9).load_state_dict(saved.state_dict())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage([a], decay=1.0)


def test_run_keeps_the_averaged_weights(synthetic_data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--backbone", "tiny",
                 "--batch-size", "16", "--micro-batch-size", "16", "--lr", "0.01", "--epochs", "1",
                 "--ema-decay", "0.9"]) == 0
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=False)["model"]
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    trained = [t for t in last["model"].values() if t.is_floating_point()]
    shadow = last["ema"]["shadow"]
    # the one epoch is the best: best.pt holds the average, last.pt the trained weights and the average
    assert any(not torch.equal(best[k], last["model"][k]) for k in best)
    kept = [best[k] for k, v in last["model"].items() if v.is_floating_point()]
    assert len(shadow) <= len(trained)
    assert all(any(torch.equal(s, k) for k in kept) for s in shadow)


def test_bad_decay_is_one_line_error(synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--ema-decay", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["simgr: error: command line: ema_decay: Input should be less than 1 (got 1.5)"]
    assert not (run / "checkpoints").exists()
