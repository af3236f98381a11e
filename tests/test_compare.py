"""`simgr compare` end to end on a tiny synthetic config: seeds, both Table 3 views and the SASRec grid as
run files, every analysis, the report and its plots, a second run that reuses the cached models, and a
report rebuilt from the committed files alone that fails loudly when one is missing, and one analysis
computed in a sitting of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model.analysis.config import CompareConfig, load_compare_config
from model.errors import SimGRError
from service.cli.main import main


def _config(tmp_path: Path, data_dir: Path) -> Path:
    cfg = {"name": "tiny", "out_dir": str(tmp_path / "report"), "work_dir": str(tmp_path / "work"),
           "datasets": [str(data_dir)], "preset": "tiny", "time_budget_min": 0.01, "lr": 0.01,
           "epoch_cap": 2, "patience": 1, "sasrec_patience": 2, "generative_seeds": 1, "sasrec_dims": [16], "sasrec_dropouts": [0.0, 0.2],
           "sasrec_lrs": [0.01], "eval_users": 0, "exact_users": 4, "beams": [5, 30], "latte_beams": [5],
           "table_beam": 10, "aggregators": ["mean", "proj"], "presets": ["tiny"], "entropy_ks": [1, 10, 20],
           "latte_valid_users": 10}
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(cfg))
    return path


def _check_report(report: Path, path: Path) -> None:
    """The report's sections, its seed cells and its plots."""
    text = report.read_text()
    for section in ("Table 3 analogue", "second view: equal wall-clock", "SASRec grid", "Table 1 analogue",
                    "Table 4 analogue", "Figure 4 analogue", "Figure 3 analogue",
                    f"simgr compare --config {path} --seeds 2"):
        assert section in text
    assert " ± " in text  # two seeds: mean ± std cells
    assert "Mean ± sample std over 2 seed(s) (1 for autoregressive/Latte)" in text
    for png in ("table1_beam.png", "figure4_entropy.png", "figure3_presets.png"):
        assert (report.parent / png).stat().st_size > 1000


def _check_run_files(runs: Path) -> None:
    """One file per (method, view, seed), the generative baselines at one seed, and the stopping rule each
    method trained under."""
    names = sorted(p.name for p in runs.iterdir())
    assert "synthetic-simgr-converged-s1.json" in names
    assert "synthetic-autoregressive-converged-s0.json" in names
    assert "synthetic-autoregressive-converged-s1.json" not in names  # generative_seeds = 1
    assert "synthetic-latte-budget-s0.json" in names
    assert sum("-grid-" in n for n in names) == 2
    one = json.loads((runs / "synthetic-sasrec-converged-s1.json").read_text())
    assert one["users"] == 48  # every test user
    assert one["train"]["patience"] == 2  # sasrec_patience
    assert json.loads((runs / "synthetic-simgr-converged-s1.json").read_text())["train"]["patience"] == 1
    assert one["hyper"]["dim"] == 16


def _check_results(results: dict) -> None:
    """Table 1's beams against exact search, counted over every test user, and Figure 4's entropies."""
    beams = results["table1"]["beams"]
    assert beams["30"]["top5_overlap_exact"] == 1.0  # beam 30 >= 30 items: beam search IS exact search
    assert beams["30"]["theorem41_fraction"] == 1.0
    assert beams["5"]["users"] == 48
    hits = beams["5"]["theorem41_fraction"] * 48  # a fraction of the 48 test users
    assert hits == round(hits)
    assert beams["5"]["theorem41_fraction"] <= beams["30"]["theorem41_fraction"]
    assert "entropy_category@10" in results["figure4"]["synthetic"]["simgr"]


def _check_report_only(report: Path, path: Path, text: str, tmp_path: Path) -> None:
    """With the work dir gone, --report-only rebuilds the same report and the README's table from the
    committed files."""
    shutil.rmtree(tmp_path / "work")
    report.unlink()
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- compare:tiny:start -->\nold table\n<!-- compare:tiny:end -->\nrest\n")
    assert main(["compare", "--config", str(path), "--seeds", "2", "--report-only", "--readme", str(readme)]) == 0
    assert report.read_text() == text.replace("--seeds 2`", "--seeds 2 --report-only`")
    table = readme.read_text()
    assert table.startswith("intro\n<!-- compare:tiny:start -->\n| NDCG@10, converged | sasrec |")
    assert table.endswith("<!-- compare:tiny:end -->\nrest\n")
    assert "old table" not in table
    assert " ± " in table.splitlines()[4]  # the synthetic row: two seeds


def _check_one_analysis_alone(report: Path, path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A missing analysis entry fails --report-only; `--analysis table1` computes it again in a sitting of
    its own: the beam-5 metrics entry is committed, its top-20 lists are not (the cache is gone), so the
    model trains again and the lists are ranked again; nothing else is computed."""
    entry = report.parent / "analyses" / "table1--synthetic--beam5.json"
    kept = json.loads(entry.read_text())
    entry.unlink()
    capsys.readouterr()
    assert main(["compare", "--config", str(path), "--seeds", "2", "--report-only"]) == 2
    assert f"{entry}: missing" in capsys.readouterr().err
    assert main(["compare", "--config", str(path), "--seeds", "2", "--analysis", "table1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["report"] is None
    assert json.loads(entry.read_text()) == kept
    assert not (tmp_path / "work" / "tiny" / "runs" / "synthetic-simgr-tiny-proj-converged-s0").exists()


def _check_refusals(runs: Path, path: Path, capsys: pytest.CaptureFixture) -> None:
    """Run files trained under another stopping rule or validation sample, or missing, fail the report
    loudly, and a stale run file is not reused."""
    stale = runs / "synthetic-sasrec-converged-s0.json"  # trained under another stopping rule
    stale.write_text(stale.read_text().replace('"patience": 2', '"patience": 3'))
    capsys.readouterr()
    assert main(["compare", "--config", str(path), "--seeds", "2", "--report-only"]) == 2
    assert "1 run file(s) trained under another patience" in capsys.readouterr().err
    other = runs / "synthetic-latte-converged-s0.json"  # validated on another sample of users
    other.write_text(other.read_text().replace('"valid_users": 10', '"valid_users": 0'))
    assert main(["compare", "--config", str(path), "--seeds", "2", "--report-only"]) == 2
    assert "2 run file(s) trained under another patience, epoch cap, validation sample" in capsys.readouterr().err
    assert main(["compare", "--config", str(path), "--seeds", "2", "--only", "sasrec"]) == 2  # not reused
    assert stale.name in capsys.readouterr().err
    (runs / "synthetic-parallel-budget-s0.json").unlink()
    assert main(["compare", "--config", str(path), "--seeds", "2", "--report-only"]) == 2
    assert "synthetic-parallel-budget-s0.json" in capsys.readouterr().err


def test_compare_writes_the_report_and_caches_runs(synthetic_data_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = _config(tmp_path, synthetic_data_dir)
    assert main(["compare", "--config", str(path), "--seeds", "2"]) == 0
    report = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["report"])
    text = report.read_text()
    _check_report(report, path)
    _check_run_files(report.parent / "runs")
    results = json.loads((report.parent / "results.json").read_text())
    _check_results(results)
    assert json.loads((report.parent / "compare_config.json").read_text())["seeds"] == 2

    ckpt = tmp_path / "work" / "tiny" / "runs" / "synthetic-simgr-tiny-mean-converged-s0" / "checkpoints" / "best.pt"
    stamp = ckpt.stat().st_mtime_ns
    assert main(["compare", "--config", str(path), "--seeds", "2"]) == 0  # all cached: no training
    assert ckpt.stat().st_mtime_ns == stamp
    assert json.loads((report.parent / "results.json").read_text()) == results
    assert report.read_text() == text

    _check_report_only(report, path, text, tmp_path)
    _check_one_analysis_alone(report, path, tmp_path, capsys)
    _check_refusals(report.parent / "runs", path, capsys)


def test_table3_rankings_are_kept_for_the_analyses(synthetic_data_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = _config(tmp_path, synthetic_data_dir)
    assert main(["compare", "--config", str(path), "--only", "simgr,latte"]) == 0
    report = tmp_path / "report"
    simgr = json.loads((report / "runs" / "synthetic-simgr-converged-s0.json").read_text())
    latte = json.loads((report / "runs" / "synthetic-latte-converged-s0.json").read_text())
    entries = report / "analyses"
    kept = json.loads((entries / "eval--synthetic--simgr--tiny--mean--converged-s0--beam0.json").read_text())
    assert (kept["ndcg@10"], kept["hr@10"], kept["users"]) == (simgr["metrics"]["ndcg@10"],
                                                               simgr["metrics"]["hr@10"], simgr["users"])
    kept = json.loads((entries / "eval--synthetic--latte--tiny--mean--converged-s0--beam10.json").read_text())
    assert kept["ndcg@10"] == latte["metrics"]["ndcg@10"]
    assert len(list(entries.iterdir())) == 2  # the budget runs are not the analyses' models
    assert (latte["train"]["valid_users"], simgr["train"]["valid_users"]) == (10, 0)  # latte_valid_users

    cfg = json.loads(path.read_text())  # the config changes under a cached model: refused, not reused
    path.write_text(json.dumps({**cfg, "patience": 2}))
    (report / "runs" / "synthetic-simgr-converged-s0.json").unlink()
    capsys.readouterr()
    assert main(["compare", "--config", str(path), "--only", "simgr"]) == 2
    assert "cached model trained (or started) under another run config" in capsys.readouterr().err


def test_tuned_settings_train_apart_and_are_checked(synthetic_data_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    path = _config(tmp_path, synthetic_data_dir)
    tuned = {"lr": 0.02, "dropout": 0.0, "input_dropout": 0.05}
    cfg = {**json.loads(path.read_text()), "methods": ["simgr"], "analyses": ["table3"], "budget_view": False,
           "tuned": {"simgr": tuned}}
    path.write_text(json.dumps(cfg))
    assert main(["compare", "--config", str(path), "--only", "simgr"]) == 0
    report = tmp_path / "report"
    run = json.loads((report / "runs" / "synthetic-simgr-converged-s0.json").read_text())
    assert run["hyper"] == tuned
    run_dir = tmp_path / "work" / "tiny" / "runs" / "synthetic-simgr-tiny-mean-converged-s0-dropout0-input_dropout0.05-lr0.02"
    train = json.loads((run_dir / "config.json").read_text())["train"]
    assert (train["lr"], train["dropout"], train["input_dropout"]) == (0.02, 0.0, 0.05)
    kept = report / "analyses" / "eval--synthetic--simgr--tiny--mean--converged-s0-dropout0-input_dropout0.05-lr0.02--beam0.json"
    assert json.loads(kept.read_text())["ndcg@10"] == run["metrics"]["ndcg@10"]  # not the untuned entry

    path.write_text(json.dumps({**cfg, "tuned": {"simgr": {**tuned, "lr": 0.01}}}))  # the file is now stale
    capsys.readouterr()
    assert main(["compare", "--config", str(path), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "another patience, epoch cap, validation sample or tuned settings" in err
    assert "synthetic-simgr-converged-s0.json" in err


def test_bad_compare_config_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"nmae": "x"}))
    with pytest.raises(SimGRError, match="unknown compare config field"):
        load_compare_config(path)
    path.write_text(json.dumps({"analyses": ["table9"]}))
    with pytest.raises(SimGRError, match="analyses must be among"):
        load_compare_config(path)
    path.write_text(json.dumps({"tuned": {"sasrec": {"lr": 0.003}}}))
    with pytest.raises(SimGRError, match="tuned: sasrec not among the methods it can tune"):
        load_compare_config(path)
    path.write_text(json.dumps({"tuned": {"simgr": {"tau": 0.1}}}))
    with pytest.raises(SimGRError, match=r"tuned\.simgr\.tau"):
        load_compare_config(path)
    path.write_text(json.dumps({"eval_users": 5}))
    assert load_compare_config(path) == CompareConfig(eval_users=5)


def test_bad_compare_flags_are_one_line_errors(synthetic_data_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    path = _config(tmp_path, synthetic_data_dir)
    assert main(["compare", "--config", str(path), "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["compare", "--config", str(path), "--only", "simgr,gpt5"]) == 2
    assert "gpt5 not among the config's methods" in capsys.readouterr().err
    assert main(["compare", "--config", str(path), "--analysis", "table9"]) == 2
    assert "--analysis: table9 not among the config's analyses (latte_beams, table1" in capsys.readouterr().err
    assert main(["compare", "--config", str(path), "--report-only", "--analysis", "table1"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert main(["compare", "--config", str(path), "--report-only"]) == 2  # nothing trained: names the files
    err = capsys.readouterr().err
    assert err.startswith("simgr: error:")
    assert "synthetic-simgr-converged-s0.json" in err
    assert not (tmp_path / "work").exists()  # no training happened
