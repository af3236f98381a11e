"""benchmarks/quality.py, the run behind every quality number: bad flags and an existing record are refused
before any work, a recipe sets its flags and the command line's win, and on a toy dataset it trains the tiny
preset, alone and as scripts/gpu_check.sh's device call, into run records that build a table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from bench_helpers import ENV, ROOT, load_benchmark


@pytest.mark.parametrize(("flags", "error"), [
    (["--smoothing-prefix", "1"],
     "error: command line: model: smoothing_prefix says where label smoothing spreads: set label_smoothing too"),
    (["--method", "sasrec", "--label-smoothing", "1.5"],
     "error: command line: baseline.sasrec_label_smoothing: Input should be less than 1 (got 1.5)"),
    (["--method", "sasrec", "--shuffle-ids"], "error: --shuffle-ids deals out SimGR's semantic IDs; --method sasrec has none"),
    (["--shuffle-seed", "2"], "error: --shuffle-seed is the seed of --shuffle-ids: give both"),
])
def test_quality_refuses_bad_flags_before_any_work(tmp_path: Path, flags: list[str], error: str) -> None:
    cmd = [sys.executable, "benchmarks/quality.py", "--data", str(tmp_path / "absent"), "--workdir",
           str(tmp_path / "work"), *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].endswith(error)
    assert not (tmp_path / "work").exists()


def test_quality_refusal_leaves_no_temp_workdir(tmp_path: Path) -> None:
    """Without --workdir the run makes a temp dir, and only once every flag has passed."""
    (tmp := tmp_path / "tmp").mkdir()
    cmd = [sys.executable, "benchmarks/quality.py", "--data", str(tmp_path / "absent"), "--method", "sasrec", "--shuffle-ids"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "TMPDIR": str(tmp)}, timeout=120, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert list(tmp.iterdir()) == []


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


def test_quality_another_source_builds_its_own_ids_and_says_so_in_its_line(tmp_path: Path) -> None:
    """--source other than lcrec: no X.index.json is looked for, and the line names the source (an LC-Rec
    line does not, as the lines recorded before the flag existed)."""
    quality = load_benchmark("quality")
    data = _toy_lcrec(tmp_path / "raw")
    _, lcrec = quality.parse_args(["--data", str(data)])
    _, movies = quality.parse_args(["--data", str(data), "--source", "movielens100k"])
    assert quality.given_ids(movies) is None
    assert quality._settings(movies)["source"] == "movielens100k"
    assert "source" not in quality._settings(lcrec)



@pytest.mark.parametrize(("data", "error"), [
    ([], "error: --data is required for --source lcrec"),
    (["--data", "{tmp}/absent"], "error: {tmp}/absent: no such file or directory"),
])
def test_quality_refuses_missing_data_before_any_work(tmp_path: Path, data: list[str], error: str) -> None:
    """An LC-Rec run needs its folder (only a fetched source such as movielens100k may go without one)."""
    cmd = [sys.executable, "benchmarks/quality.py", "--workdir", str(tmp_path / "work"),
           *(x.format(tmp=tmp_path) for x in data)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].endswith(error.format(tmp=tmp_path))
    assert not (tmp_path / "work").exists()



def test_quality_refuses_an_unknown_recipe(tmp_path: Path) -> None:
    cmd = [sys.executable, "benchmarks/quality.py", "--data", str(tmp_path), "--recipe", "movies"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert "argument --recipe: invalid choice: 'movies'" in out.stderr.splitlines()[-1]



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
    for x in lines:  # 60 users in thirds of 20: the thirds' mean is the whole NDCG@10
        assert len(x["ndcg@10_by_popularity"]) == 3
        assert sum(x["ndcg@10_by_popularity"]) / 3 == pytest.approx(x["ndcg@10"], abs=2e-4)
    spec = {"name": "toy", "reference": "tiny", "rows": [{"label": "tiny", "runs": ["simgr-s1.json", "simgr-s2.json"]}]}
    (report / "table.json").write_text(json.dumps(spec))
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- quality:toy:start -->\n<!-- quality:toy:end -->\nafter\n")
    assert main(["quality-table", "--report", str(report), "--readme", str(readme)]) == 0
    a, b = (x["ndcg@10"] for x in lines)
    row = readme.read_text().splitlines()[4]
    assert row.startswith(f"| tiny | 1, 2 | {(a + b) / 2:.4f} ± {abs(a - b) / math.sqrt(2):.4f} ({a:.4f}, {b:.4f}) |")
    assert main(["quality-table", "--report", str(report), "--readme", str(readme), "--check"]) == 0



def test_quality_shuffle_ids_trains_on_the_given_ids_dealt_out_again(tmp_path: Path) -> None:
    """--shuffle-ids: the run's data holds the shipped IDs permuted by --seed, in a folder of that seed's own,
    and the line says so (a line without the flag has no such key: the records before it stay comparable)."""
    from model.semantic_ids.assign import load_semantic_ids

    data, work = _toy_lcrec(tmp_path / "raw"), tmp_path / "work"
    cmd = [sys.executable, "benchmarks/quality.py", "--data", str(data), "--workdir", str(work), *QUICK,
           "--seed", "7", "--shuffle-ids"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout)
    assert (line["shuffled_ids"], line["seed"], line["n_users"]) == (True, 7, 60)
    shipped = json.loads((data / "Toy.index.json").read_text())
    items = [json.loads(x)["item_id"] for x in (work / "data-shuffled7" / "items.jsonl").read_text().splitlines()]
    dealt = load_semantic_ids(work / "data-shuffled7", items)
    assert sorted(dealt) == sorted(shipped[i] for i in items)
    assert sum(d != shipped[i] for d, i in zip(dealt, items, strict=True)) > len(items) // 2
    quality = load_benchmark("quality")
    assert "shuffled_ids" not in quality._settings(quality.parse_args(["--data", "d"])[1])


def test_quality_shuffle_seed_deals_the_ids_apart_from_the_run_seed() -> None:
    """--shuffle-seed picks the permutation, --seed the init and batch order: the IDs are dealt by
    --shuffle-seed where given, else by --seed, and the line names the permutation's seed only where the two
    differ."""
    quality = load_benchmark("quality")
    _, same = quality.parse_args(["--data", "d", "--shuffle-ids", "--seed", "2"])
    _, split = quality.parse_args(["--data", "d", "--shuffle-ids", "--seed", "42", "--shuffle-seed", "2"])
    assert (quality._shuffle_seed(same), quality._shuffle_seed(split)) == (2, 2)
    assert "shuffle_seed" not in quality._settings(same)
    assert (quality._settings(split)["shuffle_seed"], quality._settings(split)["seed"]) == (2, 42)
    assert quality._shuffle_seed(quality.parse_args(["--data", "d", "--seed", "2"])[1]) is None


# What the device image (KINDS.md in the device tool) lacks and gpu_check.sh does not carry as wheels: the
# device call must run without them, so the test below blocks them at import.
NOT_ON_DEVICE = ("faiss", "pydantic_settings", "redis", "fastapi", "starlette", "uvicorn")
BLOCKER = f"""import importlib.abc, sys
class _NotOnDevice(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {NOT_ON_DEVICE!r}:
            raise ImportError(f"{{name}} is not on the device image")
sys.meta_path.insert(0, _NotOnDevice())
"""


def test_gpu_check_runs_the_recipe_end_to_end(tmp_path: Path) -> None:
    """scripts/gpu_check.sh run, the prepared device call, on this CPU with the tiny preset and without the
    packages the device image lacks: the JSON line in $OUT/quality.json, the log beside it, and the recipe's
    flags with the command line's on top."""
    stage = tmp_path / "stage"
    _toy_lcrec(stage / "instruments")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**ENV, "OUT": str(tmp_path / "out"), "SIMGR_GPU_STAGE": str(stage), "SIMGR_GPU_PRESET": "tiny",
           "SIMGR_GPU_BUDGET_MIN": "1", "SIMGR_GPU_WORKDIR": str(tmp_path / "work"), "PYTHON": sys.executable,
           "PYTHONPATH": str(tmp_path / "site")}
    (tmp_path / "out").mkdir()
    out = subprocess.run(["bash", "scripts/gpu_check.sh", "run", "--epochs", "2", "--autocast", "off"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert line == json.loads(out.stdout)
    assert (line["recipe"], line["preset"], line["budget_min"], line["epochs"], line["label_smoothing"],
            line["autocast"], line["n_users"]) == ("instruments", "tiny", 1.0, 2, 0.35, "off", 60)
    assert "training on" in (tmp_path / "out" / "quality.log").read_text()
