"""Mixed precision in training steps (TrainConfig.autocast, model/training/precision.py): which devices
get bf16, and that a bf16 run on the CPU trains, keeps fp32 weights and loses little against fp32."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from model.training.precision import cpu_has_bf16_units, precision_advice, step_autocast, uses_bf16
from service.cli.main import main


@pytest.mark.parametrize(("mode", "device", "on"), [
    ("auto", "cpu", False), ("auto", "cuda", True), ("bf16", "cpu", True), ("bf16", "cuda", True),
    ("off", "cpu", False), ("off", "cuda", False),
])
def test_which_devices_get_bf16(mode: str, device: str, on: bool) -> None:
    assert uses_bf16(mode, device) is on  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "device", "units", "level", "says"), [
    ("off", "cpu", False, logging.INFO, "fp32"), ("auto", "cpu", False, logging.INFO, "fp32"),
    ("bf16", "cpu", True, logging.INFO, "bf16 autocast"), ("auto", "cuda", False, logging.INFO, "bf16 autocast"),
    ("bf16", "cpu", False, logging.WARNING, "--autocast off"),
])
def test_the_precision_line_warns_only_for_emulated_bf16(mode: str, device: str, units: bool, level: int,
                                                         says: str) -> None:
    got_level, line = precision_advice(mode, device, bf16_units=units)  # type: ignore[arg-type]
    assert got_level == level
    assert says in line


@pytest.mark.parametrize(("mode", "on"), [("auto", False), ("bf16", True), ("off", False)])
def test_the_step_context_on_the_cpu(mode: str, on: bool) -> None:
    with step_autocast(mode, torch.device("cpu")):  # type: ignore[arg-type]
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == (torch.bfloat16 if on else torch.float32)


def test_bf16_products_leave_the_loss_in_fp32() -> None:
    from model.network.model import full_softmax_loss

    g = torch.Generator().manual_seed(0)
    h = torch.nn.functional.normalize(torch.randn(9, 32, generator=g), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(300, 32, generator=g), dim=-1)
    targets = torch.randint(0, 300, (9,), generator=g)
    ref = full_softmax_loss(h, items, targets, tau=0.1, chunk=1000)
    with step_autocast("bf16", torch.device("cpu")):
        low = full_softmax_loss(h, items, targets, tau=0.1, chunk=1000)
    assert low.dtype == torch.float32
    assert 0 < abs(low.item() - ref.item()) < 2e-2 * ref.item()  # products rounded to bf16, nothing worse


def _train(data: Path, out: Path, autocast: str) -> dict:
    assert main(["train", "--data", str(data), "--out", str(out), "--backbone", "tiny", "--batch-size", "16",
                 "--micro-batch-size", "16", "--lr", "0.01", "--epochs", "2", "--autocast", autocast]) == 0
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()][-1]


def test_a_bf16_run_on_the_cpu_trains_like_fp32(synthetic_data_dir: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    fp32 = _train(synthetic_data_dir, tmp_path / "fp32", "off")
    with caplog.at_level(logging.INFO, logger="model.training.train"):
        bf16 = _train(synthetic_data_dir, tmp_path / "bf16", "bf16")
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "emulated" in r.getMessage()]
    assert len(warned) == (0 if cpu_has_bf16_units() else 1)  # this machine's CPU decides
    assert bf16["train_loss"] != fp32["train_loss"]  # bf16 did run: its products round differently
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.05)
    weights = torch.load(tmp_path / "bf16" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


def test_an_unknown_mode_is_one_line_error(synthetic_data_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(synthetic_data_dir), "--out", str(tmp_path / "r"), "--autocast", "fp8"])
    assert e.value.code == 2
    assert "--autocast" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
