"""``simgr train --final --from-run RUN``: the deployed model trains on the valid and test tails too.

Every user's last interaction is the item ``X``, which therefore never occurs in the train part
``items[:-2]``. A validated run cannot learn to recommend it; the final model, trained on all interactions
for the validated run's best epoch count, must, and its export counts ``X`` in the popularity list.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.data.synthetic import random_sids
from model.evaluation.evaluate import evaluate_model
from model.training.run import load_run
from service.cli.main import main

TINY = ["--backbone", "tiny", "--batch-size", "16", "--micro-batch-size", "16", "--lr", "0.01", "--seed", "0"]


def tail_dataset(root: Path, capsys: pytest.CaptureFixture) -> Path:
    """40 users each walk 5 of 20 items in order, then interact with X."""
    rng = np.random.default_rng(0)
    users, items, times = [], [], []
    for u in range(40):
        start = int(rng.integers(20))
        for j, item in enumerate([f"i{(start + j) % 20}" for j in range(5)] + ["X"]):
            users.append(f"u{u}")
            items.append(item)
            times.append(1_700_000_000 + 100 * u + j)
    pq.write_table(pa.table({"user_id": users, "item_id": items, "timestamp": times}), root.parent / "log.parquet")
    assert main(["prepare", "--source", "events", "--interactions", str(root.parent / "log.parquet"),
                 "--out", str(root), "--min-user-interactions", "3", "--min-item-interactions", "1"]) == 0
    ids = [json.loads(x)["item_id"] for x in (root / "items.jsonl").read_text().splitlines()]
    (root / "semantic_ids.json").write_text(json.dumps(dict(zip(ids, random_sids(len(ids), seed=0), strict=True))))
    capsys.readouterr()
    return root


def hit_rate_of_tail(run_dir: Path) -> float:
    """HR@5 of the test target (always X) from each user's test history."""
    run = load_run(run_dir)
    hist, targets = run.data.eval_examples("test", max_history=run.cfg.prompt.max_history)
    assert {run.data.items[t].item_id for t in targets} == {"X"}
    return float(evaluate_model(run.method, run.built, hist, targets)["hr@5"])


def test_final_model_trains_on_the_tails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tail_dataset(tmp_path / "data", capsys)
    validated, final = tmp_path / "validated", tmp_path / "final"
    assert main(["train", "--data", str(data), "--out", str(validated), "--epochs", "4", "--patience", "9",
                 *TINY]) == 0
    assert main(["evaluate", "--run", str(validated), "--split", "valid"]) == 0
    best_epoch = json.loads(capsys.readouterr().out.strip().splitlines()[0])["best_epoch"]
    assert main(["train", "--final", "--from-run", str(validated), "--out", str(final)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == best_epoch
    assert json.loads((final / "config.json").read_text())["final"] is True

    assert hit_rate_of_tail(validated) < 0.2  # X is never a training target of the validated run
    assert hit_rate_of_tail(final) > 0.8  # the final model trained on the tails

    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(final), "--out", str(bundle)]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["trained_on"]["interactions"] == "all"
    assert manifest["trained_on"]["n_interactions"] == 240
    assert manifest["trained_on"]["epochs"] == best_epoch
    assert manifest["trained_on"]["from_run"] == str(validated)
    assert manifest["expected_quality"]["valid"] == json.loads((validated / "metrics_valid.json").read_text())
    assert json.loads((bundle / "popularity.json").read_text())[0] == "X"  # counted over all interactions


def test_final_needs_a_validated_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for args in (["--final"], ["--from-run", str(tmp_path)], ["--final", "--from-run", str(tmp_path / "none")]):
        assert main(["train", "--out", str(tmp_path / "f"), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("simgr: error: ")
        assert err.count("\n") == 1
