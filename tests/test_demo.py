"""`simgr demo --no-serve` end to end on MovieLens-100k with the smallest budget: one epoch of the tiny
preset and a few RQ-VAE epochs (the recbole wheel is fetched into a throwaway cache)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from model.errors import SimGRError
from service.cli.main import main


@pytest.mark.slow
def test_demo_without_serving_exports_a_bundle_and_shows_two_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("SIMGR_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "demo"
    try:
        code = main(["demo", "--no-serve", "--workdir", str(work), "--preset", "tiny",
                     "--time-budget-min", "0.01", "--rqvae-epochs", "2"])
    except SimGRError as exc:
        if "cannot fetch" in str(exc):
            pytest.skip(f"no route to MovieLens-100k: {exc}")
        raise
    out = capsys.readouterr().out
    assert code == 0
    for step in ("[1/5] prepare", "[2/5] semantic IDs", "[3/5] train", "[4/5] evaluate", "[5/5] export"):
        assert step in out
    assert "943 users, 1682 items, 100000 interactions" in out
    assert len(re.findall(r"^ +\d+\. .+ \(score -?\d+\.\d{3}\)$", out, flags=re.MULTILINE)) == 20  # 2 users x top-10
    assert f"serve it with: simgr serve --artifacts {work / 'bundle'}" in out
    assert "Ctrl-C to stop" not in out  # --no-serve: nothing is served
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    assert (work / "bundle" / "index.faiss").is_file()
    assert re.search(rf"model version {manifest['model_version']}, FAISS == exact top-10", out)
    metrics = json.loads(out.split("[4/5]")[1].splitlines()[1])
    assert metrics["n_users"] == 943
