"""Which malloc a process runs on, read from its own memory map: known answers from map files, and real
child processes started with and without a preloaded tcmalloc/jemalloc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.training.allocator import installed, malloc_advice, malloc_in_use, preload_env, preload_line

ROOT = Path(__file__).resolve().parents[1]
BARE = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}


@pytest.mark.parametrize(("line", "expected"), [
    ("7f2c1000-7f2c2000 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10", "tcmalloc"),
    ("7f2c1000-7f2c2000 r-xp 00000000 08:01 42 /opt/conda/lib/libjemalloc.so.2", "jemalloc"),
    ("7f2c1000-7f2c2000 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libc.so.6", "system"),
])
def test_malloc_is_read_from_the_memory_map(tmp_path: Path, line: str, expected: str) -> None:
    maps = tmp_path / "maps"
    maps.write_text("55d0a000-55d0b000 r-xp 00000000 08:01 7 /usr/bin/python3.11\n" + line + "\n")
    assert malloc_in_use(maps) == expected


def test_no_memory_map_means_the_system_malloc(tmp_path: Path) -> None:
    assert malloc_in_use(tmp_path / "absent") == "system"


def _child(env: dict[str, str], code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         cwd=ROOT, check=True)
    return out.stdout.strip()


def test_a_process_without_preload_runs_on_the_system_malloc() -> None:
    assert _child(BARE, "from model.training.allocator import malloc_in_use; print(malloc_in_use())") == "system"


@pytest.mark.parametrize("name", ["tcmalloc", "jemalloc"])
def test_a_preloaded_malloc_is_the_one_in_use(name: str) -> None:
    env = installed().get(name)  # type: ignore[call-overload]
    if env is None:
        pytest.skip(f"{name} is not installed (scripts/ensure_packages.sh installs it on Debian)")
    got = _child(BARE | env, "from model.training.allocator import malloc_advice; print(malloc_advice('cpu'))")
    assert got == f"malloc: {name}"


def test_the_advice_names_the_preload_only_for_a_cpu_run_on_glibc() -> None:
    code = "from model.training.allocator import malloc_advice as m; print(m('cpu')); print(m('cuda'))"
    cpu, cuda = _child(BARE, code).splitlines()
    assert cuda == "malloc: system"
    env = preload_env()
    assert cpu.startswith("malloc: system (glibc)")
    assert (preload_line() or "install libtcmalloc-minimal4") in cpu
    assert _child(BARE, "import runpy; runpy.run_module('model.training.allocator', run_name='__main__')") \
        == preload_line()  # `python -m model.training.allocator` prints the same line
    if env is not None:  # the named preload really switches a process's malloc
        assert _child(BARE | env, "from model.training.allocator import malloc_in_use; print(malloc_in_use())") != "system"


def test_a_missing_preload_library_leaves_the_advice_working() -> None:
    """A preload this machine lacks (the loader skips it: glibc's malloc runs) names the very library the
    probe looks for; the advice every training run logs must still come, not an error from the probe."""
    env = BARE | {"LD_PRELOAD": "libtcmalloc.so.99"}
    code = ("from model.training.allocator import installed, malloc_advice; "
            "print(sorted(installed())); print(malloc_advice('cpu'))")
    kinds, advice = _child(env, code).splitlines()
    assert kinds == str(sorted(installed()))
    assert advice.startswith("malloc: system (glibc)")


def test_in_this_process_the_advice_matches_the_map() -> None:
    assert malloc_advice("cuda") == f"malloc: {malloc_in_use()}"
