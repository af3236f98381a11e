"""The benchmark scripts stay runnable: each answers --help; the decoding-cost benchmark runs on its
synthetic setting and prints ONE JSON line; cold_items.py times PUT /items on a real server; quality.py,
alone and as scripts/gpu_check.sh's device call, trains the tiny preset on a toy dataset and its run
records build a table (on real data it needs minutes, as serve_load does with its several servers)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_helpers import ROOT, load_benchmark

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SIMGR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


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


@pytest.mark.parametrize(("flags", "error"), [
    (["--smoothing-prefix", "1"],
     "error: command line: model: smoothing_prefix says where label smoothing spreads: set label_smoothing too"),
    (["--method", "sasrec", "--label-smoothing", "1.5"],
     "error: command line: baseline.sasrec_label_smoothing: Input should be less than 1 (got 1.5)"),
])
def test_quality_refuses_bad_flags_before_any_work(tmp_path: Path, flags: list[str], error: str) -> None:
    cmd = [sys.executable, "benchmarks/quality.py", "--data", str(tmp_path / "absent"), "--workdir",
           str(tmp_path / "work"), *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].endswith(error)
    assert not (tmp_path / "work").exists()


def test_quality_recipe_sets_its_flags_and_command_line_flags_win() -> None:
    quality = load_benchmark("quality")
    _, plain = quality.parse_args(["--data", "d"])
    _, recipe = quality.parse_args(["--data", "d", "--recipe", "instruments", "--seed", "3"])
    assert (plain.recipe, plain.preset, plain.label_smoothing) == (None, "small", 0.0)
    assert (recipe.recipe, recipe.preset, recipe.label_smoothing, recipe.hidden_dropout, recipe.unique_codes,
            recipe.autocast, recipe.seed) == ("instruments", "large", 0.35, 0.1, 1024, "bf16", 3)
    _, override = quality.parse_args(["--autocast", "off", "--recipe=instruments", "--data", "d",
                                      "--label-smoothing", "0.2"])
    assert (override.autocast, override.label_smoothing, override.preset) == ("off", 0.2, "large")


def test_quality_names_a_run_by_its_budget() -> None:
    """The budget shapes the learning-rate schedule: a 60-minute run is not the 30-minute one resumed."""
    quality = load_benchmark("quality")
    names = [quality._run_name(quality.parse_args(["--data", "d", "--recipe", "instruments", *extra])[1], "-x")
             for extra in ([], ["--budget-min", "30"], ["--budget-min", "60"], ["--budget-min", "2.5"])]
    assert names[0] == names[1] == ("run-large-items-mean-d0.3-i0.3-h0.1-t0.1-lr0.001-wd0.01-ema0.999-x-bf16-ls0.35")
    assert names[2:] == [names[0].replace("-x-", "-x-b60-"), names[0].replace("-x-", "-x-b2.5-")]


def test_quality_own_ids_passes_over_the_shipped_index(tmp_path: Path) -> None:
    """--own-ids builds IDs from the item text although the dataset ships X.index.json."""
    quality = load_benchmark("quality")
    data = _toy_lcrec(tmp_path / "raw")
    _, shipped = quality.parse_args(["--data", str(data)])
    _, own = quality.parse_args(["--data", str(data), "--own-ids"])
    assert quality.given_ids(shipped) == data / "Toy.index.json"
    assert quality.given_ids(own) is None
    assert (quality._settings(own)["own_ids"], quality._settings(shipped)["own_ids"]) == (True, False)


def test_quality_refuses_an_unknown_recipe(tmp_path: Path) -> None:
    cmd = [sys.executable, "benchmarks/quality.py", "--data", str(tmp_path), "--recipe", "movies"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert "argument --recipe: invalid choice: 'movies'" in out.stderr.splitlines()[-1]


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


def test_quality_refuses_to_overwrite_a_run_record_before_any_work(tmp_path: Path) -> None:
    record = tmp_path / "runs" / "simgr-s1.json"
    record.parent.mkdir()
    record.write_text("committed\n")
    cmd = [sys.executable, "benchmarks/quality.py", "--data", str(tmp_path / "absent"), "--workdir",
           str(tmp_path / "work"), "--record", str(record)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].endswith(f"error: --record {record}: already exists; record a new run "
                                                "under a new name")
    assert record.read_text() == "committed\n"
    assert not (tmp_path / "work").exists()


def _toy_lcrec(folder: Path) -> Path:
    """60 users over 40 items with given two-level semantic IDs: quality.py's input at a few seconds' cost."""
    import random

    rng = random.Random(0)
    folder.mkdir(parents=True)
    inter = {f"u{u}": [rng.randrange(40) for _ in range(rng.randrange(4, 9))] for u in range(60)}
    (folder / "Toy.inter.json").write_text(json.dumps(inter))
    (folder / "Toy.index.json").write_text(json.dumps({str(i): [f"<a_{i % 8}>", f"<b_{i // 8}>"] for i in range(40)}))
    return folder


QUICK = ["--preset", "tiny", "--epochs", "2", "--budget-min", "1", "--autocast", "off"]


def test_quality_records_two_seeds_and_the_table_reports_them(tmp_path: Path) -> None:
    """quality.py --record twice, then `simgr quality-table` over the two records: the row holds each run's own
    test NDCG@10 and their mean, and the record keeps the line quality.py printed."""
    from service.cli.main import main

    data, report = _toy_lcrec(tmp_path / "raw"), tmp_path / "toy_report"
    lines = []
    for seed in (1, 2):
        record = report / "runs" / f"simgr-s{seed}.json"
        cmd = [sys.executable, "benchmarks/quality.py", "--data", str(data), "--workdir", str(tmp_path / "work"),
               *QUICK, "--seed", str(seed), "--record", str(record)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        lines.append(json.loads(out.stdout))
        assert json.loads(record.read_text())["line"] == lines[-1]
    # the epoch cap, not the 1-minute budget, ends these runs: not flagged as still improving
    assert [(x["seed"], x["preset"], x["epochs"], x["n_users"], x["still_improving"]) for x in lines] == [
        (1, "tiny", 2, 60, False), (2, "tiny", 2, 60, False)]
    spec = {"name": "toy", "reference": "tiny", "rows": [{"label": "tiny", "runs": ["simgr-s1.json", "simgr-s2.json"]}]}
    (report / "table.json").write_text(json.dumps(spec))
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- quality:toy:start -->\n<!-- quality:toy:end -->\nafter\n")
    assert main(["quality-table", "--report", str(report), "--readme", str(readme)]) == 0
    a, b = (x["ndcg@10"] for x in lines)
    row = readme.read_text().splitlines()[4]
    assert row.startswith(f"| tiny | 1, 2 | {(a + b) / 2:.4f} ± {abs(a - b) / math.sqrt(2):.4f} ({a:.4f}, {b:.4f}) |")
    assert main(["quality-table", "--report", str(report), "--readme", str(readme), "--check"]) == 0


def test_gpu_check_runs_the_recipe_end_to_end(tmp_path: Path) -> None:
    """scripts/gpu_check.sh run, the prepared device call, on this CPU with the tiny preset: the JSON line in
    $OUT/quality.json, the log beside it, and the recipe's flags with the command line's on top."""
    stage = tmp_path / "stage"
    _toy_lcrec(stage / "instruments")
    env = {**ENV, "OUT": str(tmp_path / "out"), "SIMGR_GPU_STAGE": str(stage), "SIMGR_GPU_PRESET": "tiny",
           "SIMGR_GPU_BUDGET_MIN": "1", "SIMGR_GPU_WORKDIR": str(tmp_path / "work"), "PYTHON": sys.executable}
    (tmp_path / "out").mkdir()
    out = subprocess.run(["bash", "scripts/gpu_check.sh", "run", "--epochs", "2", "--autocast", "off"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert line == json.loads(out.stdout)
    assert (line["recipe"], line["preset"], line["budget_min"], line["epochs"], line["label_smoothing"],
            line["autocast"], line["n_users"]) == ("instruments", "tiny", 1.0, 2, 0.35, "off", 60)
    assert "training on" in (tmp_path / "out" / "quality.log").read_text()
