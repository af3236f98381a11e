"""Training end to end through the CLI on a tiny synthetic dataset: train -> evaluate -> export,
resume after an interruption, the wall-clock budget, bad input, and DDP with two gloo processes."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import TINY

from model.evaluation.metrics import METRIC_KEYS
from model.export.bundle import Bundle
from service.cli.main import main


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def log_lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


def test_train_evaluate_export(synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--epochs", "6", *TINY]) == 0
    summary = last_json(capsys.readouterr().out)
    log = log_lines(run)
    assert len(log) == summary["epochs"] == 6
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert summary["best_valid_ndcg@10"] > 0.5  # the walk-in-order rule is learnable
    assert (run / "checkpoints" / "best.pt").is_file()
    assert (run / "config.json").is_file()

    assert main(["evaluate", "--run", str(run), "--split", "test"]) == 0
    printed = last_json(capsys.readouterr().out)
    saved = json.loads((run / "metrics_test.json").read_text())
    assert list(saved) == list(METRIC_KEYS)
    thirds = printed.pop("ndcg@10_by_popularity")
    assert printed == saved
    assert json.loads((run / "by_popularity_test.json").read_text()) == {"ndcg@10_by_popularity": thirds}
    assert sum(thirds) / 3 == pytest.approx(saved["ndcg@10"])  # 48 users: three thirds of 16
    assert saved["n_users"] == 48
    assert saved["n_items"] == 30

    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["checked_users"] == 48
    manifest = json.loads((bundle / "manifest.json").read_text())
    for key in ("format_version", "model_version", "backbone", "dim", "tau", "prompt", "n_items", "metrics",
                "packages"):
        assert key in manifest
    assert manifest["metrics"]["test"] == saved
    loaded = Bundle.load(bundle)
    assert loaded.item_ids[0] == "i0"
    assert loaded.embeddings.shape == (30, 32)
    # the bundle is immutable: a second export into it is refused, --force replaces it through the rename
    before = (bundle / "manifest.json").read_bytes()
    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 2
    assert "not empty; pass --force" in capsys.readouterr().err
    assert (bundle / "manifest.json").read_bytes() == before
    assert main(["export", "--run", str(run), "--out", str(bundle), "--force"]) == 0
    assert last_json(capsys.readouterr().out)["model_version"] == manifest["model_version"]
    assert sorted(p.name for p in bundle.parent.iterdir() if p.name.startswith(".bundle")) == []


def test_resume_continues_where_it_stopped(synthetic_data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", str(synthetic_data_dir), "--out", str(run), *TINY, "--patience", "99"]
    assert main([*args, "--epochs", "2"]) == 0
    # a later invocation (as after a kill) picks up the last checkpoint and the saved config
    assert main([*args, "--epochs", "2"]) == 0
    assert [r["epoch"] for r in log_lines(run)] == [1, 2]  # nothing left to do: no epoch re-run
    assert main([*args, "--epochs", "2", "--no-resume"]) == 0
    assert [r["epoch"] for r in log_lines(run)] == [1, 2]  # a fresh run, a fresh log


def test_resume_under_another_config_is_refused(synthetic_data_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """A run resumed under other settings would continue its weights and schedule under those and rewrite
    config.json: refused in one line, with nothing changed. A setting of speed only may change."""
    run = tmp_path / "run"
    args = ["train", "--data", str(synthetic_data_dir), "--out", str(run), *TINY, "--patience", "99"]
    assert main([*args, "--epochs", "1"]) == 0
    before = {p: (run / p).read_bytes() for p in ("config.json", "train_log.jsonl", "checkpoints/last.pt")}
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--time-budget-min", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"error: {run}: holds a run trained under another config (train.epochs: 1 -> 2; "
                        "train.time_budget_min: 0.0 -> 5.0); resuming would continue it under this one: train "
                        "into another directory, or start afresh there (simgr train --no-resume)")
    assert len(err.splitlines()) == 1
    assert {p: (run / p).read_bytes() for p in before} == before
    assert main([*args, "--epochs", "1", "--eval-batch-size", "7"]) == 0  # nothing left to do: resumed as is
    assert [r["epoch"] for r in log_lines(run)] == [1]


def test_time_budget_stops_cleanly(synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                   caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    # the trainer's warning reaches caplog whatever logging state earlier tests left (a level, a disabled logger)
    monkeypatch.setattr(logging.getLogger("model.training.train"), "disabled", False)
    with caplog.at_level(logging.INFO, logger="model.training.train"):
        assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), *TINY, "--epochs", "50",
                     "--time-budget-min", "0.00001"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["out_of_time"] is True
    assert summary["epochs"] == 1
    # the one validation is the best so far: the budget, not a plateau, ended the run, and the log says so
    assert summary["still_improving"] is True
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "still" in r.getMessage()] == [
        "the time budget ended training at epoch 1 with validation NDCG@10 still rising (best at that last "
        "epoch): a longer budget would likely score higher"]
    assert (run / "checkpoints" / "best.pt").is_file()


def test_budget_spent_by_validation_starts_no_empty_epoch(synthetic_data_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault: a validation slow enough to spend the budget after a whole epoch. Before, a second epoch
    began, trained no step, and was validated and logged like a real one."""
    import model.training.train as train_module

    real = train_module.evaluate_model

    def slow_evaluate(*args, **kwargs):
        out = real(*args, **kwargs)
        time.sleep(3.5)
        return out

    monkeypatch.setattr(train_module, "evaluate_model", slow_evaluate)
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), *TINY, "--epochs", "50",
                 "--time-budget-min", "0.05"]) == 0  # 3 s: the first epoch ends well inside it
    lines = log_lines(run)
    assert [(r["epoch"], r["partial_epoch"]) for r in lines] == [(1, False)]
    assert lines[0]["train_samples_per_s"] > 0


def test_bad_input_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("simgr: error:")
    assert "nope" in err[0]
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_two_gloo_processes(synthetic_data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "SIMGR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "service.cli.main", "train", "--data", str(synthetic_data_dir),
           "--out", str(run), "--epochs", "2", "--backbone", "tiny", "--batch-size", "16",
           "--micro-batch-size", "8", "--lr", "0.01"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert len(results) == 1
    assert results[0]["epochs"] == 2
    assert "world 2" in proc.stderr
    assert len(log_lines(run)) == 2
    assert (run / "checkpoints" / "best.pt").is_file()


def test_lr_schedule_known_answers() -> None:
    from model.training.schedule import lr_factor

    assert lr_factor(step=0, total=100, warmup=10) == pytest.approx(0.1)
    assert lr_factor(step=10, total=100, warmup=10) == pytest.approx(1.0)
    assert lr_factor(step=55, total=100, warmup=10) == pytest.approx(0.5)
    assert lr_factor(step=100, total=100, warmup=10) == pytest.approx(0.0)
    # a wall-clock budget half used after 1% of the steps will end the run first: it anneals by the time
    assert lr_factor(step=10, total=1000, warmup=10, budget_fraction=0.5) == pytest.approx(0.5)
    # 15% of the budget after 20% of the steps will not: the steps alone (1/9 of them past warmup)
    assert lr_factor(step=20, total=100, warmup=10, budget_fraction=0.15) == lr_factor(step=20, total=100, warmup=10)
    assert lr_factor(step=20, total=100, warmup=10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 9)))
    assert lr_factor(step=20, total=100, warmup=10, budget_fraction=0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_a_budget_that_does_not_bind_leaves_the_run_to_its_seed(synthetic_data_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault: a machine ten times slower. With a budget it never reaches, the run trains the same weights to
    the bit as on this one: the clock sets no learning rate."""
    from model.config import ModelConfig, TrainConfig
    from model.training import train as train_mod
    from model.training.run import RunConfig

    cfg = RunConfig(data_dir=str(synthetic_data_dir), model=ModelConfig(backbone="tiny"),
                    train=TrainConfig(epochs=3, patience=99, batch_size=16, micro_batch_size=16, lr=0.01,
                                      dropout=0.1, time_budget_min=60.0))
    train_mod.train(cfg, tmp_path / "fast", resume=False)
    real = train_mod._Run.seconds_used
    monkeypatch.setattr(train_mod._Run, "seconds_used", lambda run: 10 * real(run))
    train_mod.train(cfg, tmp_path / "slow", resume=False)
    want, got = log_lines(tmp_path / "fast"), log_lines(tmp_path / "slow")
    assert [(r["lr"], r["train_loss"], r["valid_ndcg@10"]) for r in got] == \
        [(r["lr"], r["train_loss"], r["valid_ndcg@10"]) for r in want]


def test_valid_sample_is_fixed_and_in_user_order() -> None:
    from model.training.order import valid_sample

    hist = [[u] for u in range(100)]
    targets = list(range(100, 200))
    h, t = valid_sample(hist, targets, 10)
    assert len(h) == 10
    assert [x[0] + 100 for x in h] == t  # pairs stay together
    assert [x[0] for x in h] == sorted(x[0] for x in h)  # user order
    assert (h, t) == valid_sample(hist, targets, 10)  # the same sample on every call (every run)
    assert valid_sample(hist, targets, 0) == (hist, targets)
    assert valid_sample(hist, targets, 500) == (hist, targets)


def test_killed_run_resumes_losing_at_most_one_epoch(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """SIGKILL a real training process after its first epoch; a rerun continues from the checkpoint."""
    import signal
    import time

    run = tmp_path / "run"
    env = {**os.environ, "SIMGR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "service.cli.main", "train", "--data", str(synthetic_data_dir), "--out", str(run),
           "--epochs", "5", "--patience", "1000", *TINY]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run / "train_log.jsonl").is_file():
            time.sleep(0.05)
        assert (run / "train_log.jsonl").is_file(), "no epoch finished in time"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = len(log_lines(run))
    ckpt_epoch = __import__("torch").load(run / "checkpoints" / "last.pt", weights_only=True)["state"]["epoch"]
    assert ckpt_epoch >= done - 1 >= 0  # the checkpoint is at most one epoch behind the log
    assert ckpt_epoch < 5, "the run ended before it was killed"
    assert main(cmd[3:]) == 0  # the same command again: it finishes the run from the checkpoint
    epochs = [r["epoch"] for r in log_lines(run)]
    assert epochs[-2:] == [4, 5]


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resumed_run_equals_an_unbroken_one(synthetic_data_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, ema_decay: float) -> None:
    """Interrupted after epoch 1 and resumed, a run with dropout trains exactly as one never interrupted:
    the weights, optimiser, counters, the random stream of the dropout masks and the weight average (which
    is what validates when ema_decay > 0) all continue."""
    from model.config import ModelConfig, TrainConfig
    from model.training import train as train_mod
    from model.training.run import RunConfig

    cfg = RunConfig(data_dir=str(synthetic_data_dir), model=ModelConfig(backbone="tiny"),
                    train=TrainConfig(epochs=3, patience=99, batch_size=16, micro_batch_size=16, lr=0.01,
                                      dropout=0.1, input_dropout=0.2, hidden_dropout=0.1, ema_decay=ema_decay))
    train_mod.train(cfg, tmp_path / "unbroken", resume=False)
    real_stop = train_mod.should_stop
    monkeypatch.setattr(train_mod, "should_stop", lambda run, state, done: True)  # the fault: killed after epoch 1
    train_mod.train(cfg, tmp_path / "broken", resume=False)
    monkeypatch.setattr(train_mod, "should_stop", real_stop)
    train_mod.train(cfg, tmp_path / "broken", resume=True)
    want, got = log_lines(tmp_path / "unbroken"), log_lines(tmp_path / "broken")
    assert [r["epoch"] for r in got] == [1, 2, 3]
    assert [r["train_loss"] for r in got] == [r["train_loss"] for r in want]
    assert [r["valid_ndcg@10"] for r in got] == [r["valid_ndcg@10"] for r in want]
