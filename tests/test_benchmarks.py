"""The benchmark scripts stay runnable: each answers --help; the decoding-cost benchmark runs on its
synthetic setting and prints ONE JSON line; cold_items.py times PUT /items on a real server (on real data
serve_load needs minutes with its several servers). quality.py has its own file, test_quality_benchmark.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from bench_helpers import ENV, ROOT, load_benchmark

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_every_benchmark_is_listed() -> None:
    assert [p.name for p in SCRIPTS] == ["allocator.py", "batch_scoring.py", "batching.py", "cold_items.py", "decode_cost.py", "generative_cost.py",
                                         "http_load.py", "index_scale.py", "mixed_precision.py", "popularity_baseline.py", "prefix_sharing.py",
                                         "prepare_scale.py", "quality.py",
                                         "serve_load.py", "serve_memory.py", "step_profile.py", "text_baseline.py",
                                         "train_scale.py", "user_spread.py"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_answers_help(script: Path) -> None:
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=ENV,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ")
    summary = (script.read_text().split('"""')[1]).splitlines()[0]
    assert " ".join(summary.split()[:3]) in " ".join(out.stdout.split())  # the docstring's first line


def test_step_profile_reports_the_costliest_operators() -> None:
    cmd = [sys.executable, "benchmarks/step_profile.py", "--backbone", "tiny", "--steps", "2", "--profiled", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    got = json.loads(line)
    assert (got["backbone"], got["autocast"], got["profiled_steps"], len(got["top"])) == ("tiny", "off", 2, 12)
    shares = [op["share"] for op in got["top"]]
    assert shares == sorted(shares, reverse=True)
    assert 0 < sum(shares) <= 1.0001
    assert "aten::mm" in {op["op"] for op in got["top"]}  # the decoder's projections and the item scores
    assert got["train_samples_per_s"] > 0


def test_cold_items_times_put_items_on_a_served_bundle(quant_data_dir: Path, quant_bundle_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from model.data.dataset import load_items
    from model.export.added import AddedEmbedding

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when run as a script: serve_load beside it
    items = load_items(quant_data_dir / "items.jsonl")[:12]  # copies of 12 items: the tiny code space has room
    got = load_benchmark("cold_items").time_put(quant_bundle_dir, items, tmp_path, AddedEmbedding(neighbours=3))
    assert (got["items"], got["neighbours"]) == (11, 3)  # the first PUT is timed apart
    assert set(got) == {"items", "seconds", "items_per_s", "first_put_s", "neighbours"}
    assert got["items_per_s"] > 0
    journal = (tmp_path / "put_state" / "catalog.jsonl").read_text().splitlines()  # one durable line per PUT
    ids = [f"bench-{it.item_id}" for it in items]
    assert [[c["item_id"] for c in json.loads(line)["changes"]] for line in journal] == [ids[:1], ids[1:]]


@pytest.mark.slow
def test_decode_cost_synthetic_prints_one_json_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "benchmarks/decode_cost.py", "--synthetic", "--preset", "tiny", "--epochs", "1",
           "--users", "8", "--cache", str(tmp_path / "cache")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert (result["users"], result["backbone"], result["beam"]) == (8, "tiny", "kv-cache")
    runs = ("simgr", "beam20", "beam100")
    assert set(result) == {"backbone", "n_items", "users", "threads", "beam", "simgr_run", "ar_run",
                           "speedup_vs_beam20", "speedup_vs_beam100",
                           *(f"{m}_{r}" for m in ("seconds", "items_per_s", "ndcg10") for r in runs)}
    assert Path(result["simgr_run"]).is_relative_to(tmp_path)  # trained into --cache, not the repo
    for beam in ("beam20", "beam100"):  # speedup = time ratio = throughput ratio (same users, same k)
        ratio = result["items_per_s_simgr"] / result[f"items_per_s_{beam}"]
        assert result[f"speedup_vs_{beam}"] == pytest.approx(ratio, rel=0.01, abs=0.01)


def test_batching_synthetic_prints_one_json_line() -> None:
    # 2 rounds of 30 steps on a 9-step synthetic epoch: the second round starts past the epoch's end
    cmd = [sys.executable, "benchmarks/batching.py", "--steps", "30", "--rounds", "2", "--users", "64",
           "--methods", "simgr"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])["simgr"]
    assert result["padding_train_on"] < result["padding_train_off"]  # pooled batches pad less
    assert result["padding_rank_on"] <= result["padding_rank_off"]
    for side in ("on", "off"):
        assert result[f"train_samples_per_s_{side}"] > 0
        assert result[f"rank_users_per_s_{side}"] > 0


def test_mixed_precision_synthetic_prints_one_json_line() -> None:
    cmd = [sys.executable, "benchmarks/mixed_precision.py", "--backbone", "tiny", "--steps", "2", "--rounds", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["train_samples_per_s_fp32"] > 0
    assert result["train_samples_per_s_bf16"] > 0
    ratio = result["train_samples_per_s_bf16"] / result["train_samples_per_s_fp32"]
    assert result["train_speedup"] == pytest.approx(ratio, abs=0.01)
    assert 0 <= result["max_rel_loss_gap"] < 0.05  # bf16 products, fp32 softmax: the same loss to ~1e-3


def test_allocator_prints_one_json_line_per_installed_malloc() -> None:
    from model.training.allocator import installed

    cmd = [sys.executable, "benchmarks/allocator.py", "--backbone", "tiny", "--steps", "2", "--rounds", "1",
           "--threads", "1"]
    env = {k: v for k, v in ENV.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for name in installed():  # each child ran on the malloc it is filed under
        assert result[name]["malloc"] == name
        assert result[name]["samples_per_s"] > 0
        assert result[name]["page_faults_per_step"] >= 0
        assert 0 < result[name]["max_rss_gib"] < 64  # GiB: a tiny model's peak, not KiB or bytes
    for name in set(installed()) - {"system"}:
        ratio = result[name]["samples_per_s"] / result["system"]["samples_per_s"]
        assert result[f"speedup_{name}"] == pytest.approx(ratio, abs=0.01)


def test_user_spread_compares_a_trained_run_with_its_init(synthetic_data_dir: Path, tmp_path: Path) -> None:
    from service.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--backbone", "tiny",
                 "--epochs", "2", "--seed", "3"]) == 0
    cmd = [sys.executable, "benchmarks/user_spread.py", "--run", str(run), "--users", "16"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert (result["backbone"], result["users"]) == ("tiny", 16)
    for side in ("trained", "init"):
        assert -1.0 <= result[side]["mean_cosine"] <= 1.0
        assert 0.0 < result[side]["top_dim_share"] <= 1.0
    assert result["trained"] != result["init"]  # the trained weights, not a second copy of the init
    bad = subprocess.run([*cmd[:-2], "--users", "1"], capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1].endswith("--users must be at least 2")


def test_popularity_baseline_known_answer(tmp_path: Path) -> None:
    """Item k (1..10) is in the training part of 11 - k users: distinct counts, so the list is I1..I10.
    User u's valid target is I(11 - u), at rank 10 - u (user 0's is a new item); every test target is new."""
    from service.cli.main import main

    seqs = {f"u{u}": [f"I{k}" for k in range(1, 11 - u)] + ([f"I{11 - u}"] if u else ["Z"]) + [f"T{u}"]
            for u in range(10)}
    (tmp_path / "Toy.inter.json").write_text(json.dumps(seqs))
    assert main(["prepare", "--source", "lcrec", "--input", str(tmp_path), "--out", str(tmp_path / "data")]) == 0
    out = subprocess.run([sys.executable, "benchmarks/popularity_baseline.py", "--data", str(tmp_path / "data")],
                         capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    ndcg = sum(1 / math.log2(12 - u) for u in range(1, 10)) / 10
    assert result["valid"]["hr@10"] == 0.9
    assert result["valid"]["ndcg@10"] == round(ndcg, 4)
    assert (result["test"]["hr@10"], result["test"]["ndcg@10"], result["test"]["users"]) == (0.0, 0.0, 10)
    # valid target of user u has count u: thirds of 4, 3, 3 users, counts 9..6, 5..3 and 2..0 (user 0: none)
    gains = {u: 1 / math.log2(12 - u) for u in range(1, 10)} | {0: 0.0}
    assert result["valid"]["target_count_by_popularity"] == [[6, 7, 9], [3, 4, 5], [0, 1, 2]]
    assert result["valid"]["ndcg@10_by_popularity"] == [round(sum(gains[u] for u in us) / len(us), 4)
                                                        for us in ((9, 8, 7, 6), (5, 4, 3), (2, 1, 0))]
    assert result["test"]["target_count_by_popularity"] == [[0, 0, 0]] * 3


def test_generative_cost_prints_its_line_on_a_prepared_dataset(synthetic_data_dir: Path) -> None:
    """generative_cost.py end to end at toy size: one JSON line naming the dataset it read."""
    cmd = [sys.executable, "benchmarks/generative_cost.py", "--data", str(synthetic_data_dir), "--preset", "tiny",
           "--train-users", "20", "--seconds", "1", "--batch", "8", "--users", "10"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout)
    assert (line["dataset"], line["preset"]) == ("synthetic", "tiny")
