"""The layering rules of model/, index/ and service/, checked on the import graph of the source (imports
under `if TYPE_CHECKING:` excluded, lazy imports inside functions included):

- no import cycles;
- model/ and index/ never import service/; index/ never imports model/;
- inside model/, a stage imports only itself and the stages before it:
  data < semantic_ids < network < methods < baselines < evaluation < training < export < analysis,
  with config, errors, locks and progress below all of them.

The checker runs on a synthetic package first, so it is known to catch each kind of problem."""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "index", "service")
SHARED = ("config", "errors", "locks", "progress")
FORBIDDEN = {"model": ("service",), "index": ("model", "service")}  # top-level package -> never imports
STAGES = ("data", "semantic_ids", "network", "methods", "baselines", "evaluation", "training", "export",
          "analysis")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``packages`` under ``root``."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            out[".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in node.body for n in ast.walk(n))
    return skip


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1 packages
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, base] if base else parts)
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (the longest known prefix of each imported name)."""
    files = module_files(root, packages)

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            for name in _imported_names(node, mod, path.name == "__init__.py"):
                target = resolve(name)
                if target is not None and target != mod:
                    deps.add(target)
        graph[mod] = deps
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (strongly connected
    components with more than one module), sorted."""
    reach = {v: _reachable(graph, v) for v in graph}
    groups = {tuple(sorted({v} | {w for w in reach[v] if v in reach.get(w, ())})) for v in graph}
    return sorted(list(g) for g in groups if len(g) > 1)


def stage_rank(module: str) -> int | None:
    """0 for model's shared modules, 1.. for its stages in pipeline order, None outside model/."""
    parts = module.split(".")
    if parts[0] != "model" or len(parts) == 1:
        return 0 if parts == ["model"] else None
    if parts[1] in SHARED:
        return 0
    return STAGES.index(parts[1]) + 1 if parts[1] in STAGES else -1


def layering_problems(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    graph = import_graph(root, packages)
    problems = [f"cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    for mod, deps in sorted(graph.items()):
        top = mod.split(".")[0]
        rank = stage_rank(mod)
        if rank == -1:
            problems.append(f"unknown stage: {mod}")
        for dep in sorted(deps):
            if dep.split(".")[0] in FORBIDDEN.get(top, ()):
                problems.append(f"wrong way: {mod} -> {dep}")
            dep_rank = stage_rank(dep)
            if rank is not None and rank >= 0 and dep_rank is not None and dep_rank > rank:
                problems.append(f"later stage: {mod} -> {dep}")
    return problems


# ---- the checker on a synthetic tree -------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_checker_finds_each_kind_of_problem(tmp_path: Path) -> None:
    _write(tmp_path, {
        "model/__init__.py": "",
        "model/errors.py": "",
        "model/data/__init__.py": "",
        "model/data/load.py": "from model.errors import X\nfrom model.network import net\n",  # later stage
        "model/network/__init__.py": "",
        "model/network/net.py": "from . import ring\n",  # relative import, part of a cycle
        "model/network/ring.py": "def f():\n    from model.network.net import g\n",  # lazy import closes it
        "model/training/__init__.py": "",
        "model/training/loop.py": (
            "from typing import TYPE_CHECKING\n"
            "from model.data.load import y\n"
            "if TYPE_CHECKING:\n    from model.export.out import Z\n"  # excluded: no cycle with out.py
            "import service.app\n"  # wrong way
        ),
        "model/export/__init__.py": "",
        "model/export/out.py": "from model.training.loop import run\n",
        "model/extras/__init__.py": "",  # not a known stage
        "index/__init__.py": "from model.errors import E\n",  # index -> model
        "service/__init__.py": "",
        "service/app.py": "import index\nfrom model.data import load\n",
    })
    assert layering_problems(tmp_path) == [
        "cycle: model.network.net <-> model.network.ring",
        "wrong way: index -> model.errors",
        "later stage: model.data.load -> model.network",
        "later stage: model.data.load -> model.network.net",
        "unknown stage: model.extras",
        "wrong way: model.training.loop -> service.app",
    ]


def test_checker_accepts_a_clean_tree(tmp_path: Path) -> None:
    _write(tmp_path, {
        "model/__init__.py": "",
        "model/config.py": "",
        "model/data/__init__.py": "from model.data.load import x\n",  # a package re-exporting its module
        "model/data/load.py": "from model.config import C\n",
        "model/analysis/__init__.py": "",
        "model/analysis/report.py": "from model.data import load\nfrom model.training import loop\n",
        "model/training/__init__.py": "",
        "model/training/loop.py": "from model.data.load import x\nimport index\n",
        "index/__init__.py": "import numpy\n",
        "service/__init__.py": "",
        "service/app.py": "from model.analysis.report import r\nfrom index import I\n",
    })
    assert layering_problems(tmp_path) == []


# ---- the project ---------------------------------------------------------------------------------------


def test_project_follows_the_layering_rules() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 50  # the walk found the tree
    assert "model.export.bundle" in graph["service.model_state"]  # lazy imports count
    assert layering_problems(ROOT) == []


def test_model_init_lists_the_stages_in_order() -> None:
    import model

    doc = " ".join((model.__doc__ or "").split())
    assert "data -> semantic_ids -> network -> methods / baselines -> evaluation -> training -> export -> " \
           "analysis" in doc
    assert sorted(p.name for p in (ROOT / "model").iterdir() if (p / "__init__.py").is_file()) == sorted(STAGES)


@pytest.mark.parametrize("module", sorted(module_files(ROOT, PACKAGES)))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_readme_layout_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Development", 1)[1].split("```", 2)[1]
    rows: dict[str, str] = {}
    for line in block.splitlines():  # a stage's row, and the indented lines that continue it
        if m := re.match(r"^  ([a-z_]+)/ +(.*)$", line):
            stage = m[1]
            rows[stage] = m[2]
        elif rows and re.match(r"^ {5,}\S", line):
            rows[stage] += " " + line.strip()
    assert list(rows) == list(STAGES)  # every stage, in pipeline order
    for stage, text in rows.items():
        listed = set(re.findall(r"([a-z_0-9]+\.py|[a-z_]+/)", text))
        on_disk = {p.name for p in (ROOT / "model" / stage).glob("*.py") if p.name != "__init__.py"}
        on_disk |= {f"{p.name}/" for p in (ROOT / "model" / stage).iterdir() if (p / "__init__.py").is_file()}
        assert listed == on_disk, stage
    shared = re.search(r"^  (config\.py.*?)   ", block, flags=re.MULTILINE)
    assert shared is not None
    assert set(shared[1].split()) == {f"{m}.py" for m in SHARED}
    assert {f"{m}.py" for m in SHARED} == {p.name for p in (ROOT / "model").glob("*.py")} - {"__init__.py"}
