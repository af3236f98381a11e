"""What the tests that run scripts share: the environment a script runs in, and loading a benchmark as a
module (benchmarks/ is not a package)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
# a benchmark run as a script: the checkout importable, no progress bars, one thread as the timed runs use
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SIMGR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py, executed as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
