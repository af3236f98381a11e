"""`simgr compare` end to end on a tiny synthetic config: every analysis, the report and its plots, and a
second run that reuses the cached models instead of retraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.analysis.config import CompareConfig, load_compare_config
from model.errors import SimGRError
from service.cli.main import main


def _config(tmp_path: Path, data_dir: Path) -> Path:
    cfg = {"name": "tiny", "out_dir": str(tmp_path / "report"), "work_dir": str(tmp_path / "work"),
           "datasets": [str(data_dir)], "preset": "tiny", "time_budget_min": 0.0, "epochs": 2, "lr": 0.01,
           "eval_users": 24, "exact_users": 4, "beams": [5, 30], "latte_beams": [5], "table_beam": 10,
           "aggregators": ["mean", "proj"], "presets": ["tiny"], "entropy_ks": [1, 10, 20]}
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(cfg))
    return path


def test_compare_writes_the_report_and_caches_runs(synthetic_data_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = _config(tmp_path, synthetic_data_dir)
    assert main(["compare", "--config", str(path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = Path(result["report"])
    text = report.read_text()
    for section in ("Table 3 analogue", "Table 1 analogue", "Table 4 analogue", "Figure 4 analogue",
                    "Figure 3 analogue", f"simgr compare --config {path}"):
        assert section in text
    for png in ("table1_beam.png", "figure4_entropy.png", "figure3_presets.png"):
        assert (report.parent / png).stat().st_size > 1000
    results = json.loads((report.parent / "results.json").read_text())
    t3 = results["table3"]["synthetic"]
    assert set(t3) == {"sasrec", "autoregressive", "parallel", "latte", "simgr"}
    assert all(m["users"] == 24 for m in t3.values())
    beams = results["table1"]["beams"]
    assert beams["30"]["top5_overlap_exact"] == 1.0  # beam 30 >= 30 items: beam search IS exact search
    assert beams["30"]["theorem41_fraction"] == 1.0
    assert beams["5"]["users"] == 24
    hits = beams["5"]["theorem41_fraction"] * 24  # a fraction of the 24 users
    assert hits == round(hits)
    assert beams["5"]["theorem41_fraction"] <= beams["30"]["theorem41_fraction"]
    assert "entropy_category@10" in results["figure4"]["synthetic"]["simgr"]
    assert json.loads((report.parent / "compare_config.json").read_text())["preset"] == "tiny"

    ckpt = tmp_path / "work" / "tiny" / "runs" / "synthetic-simgr-tiny-mean" / "checkpoints" / "best.pt"
    stamp = ckpt.stat().st_mtime_ns
    assert main(["compare", "--config", str(path)]) == 0  # everything cached: no training, same numbers
    assert ckpt.stat().st_mtime_ns == stamp
    assert json.loads((report.parent / "results.json").read_text()) == results


def test_bad_compare_config_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"nmae": "x"}))
    with pytest.raises(SimGRError, match="unknown compare config field"):
        load_compare_config(path)
    path.write_text(json.dumps({"analyses": ["table9"]}))
    with pytest.raises(SimGRError, match="analyses must be among"):
        load_compare_config(path)
    path.write_text(json.dumps({"eval_users": 5}))
    assert load_compare_config(path) == CompareConfig(eval_users=5)
