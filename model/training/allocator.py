"""Which malloc a process runs on (CPU training, serving), and the one to preload when it is glibc's.

A CPU training step allocates and frees tensors of tens of megabytes (activations, the item table, the
logits over every item), 64-byte aligned (``posix_memalign``). Under glibc's malloc a step faults about ten
times as many pages in as under tcmalloc or jemalloc, and the heap grows over a run. Side by side on a
2-core Xeon (reports/quality, section 2e), a 30-minute bf16 `medium` run on tcmalloc trained 1.21x the
samples of the same run on glibc's malloc, with 1.9 GiB resident against 6.3 GiB. PyTorch's own CPU
launcher (``python -m torch.backends.xeon.run_cpu``) preloads tcmalloc by default for the same reason;
``benchmarks/allocator.py`` measures the allocators on a machine.

The allocator is chosen when the process starts (``LD_PRELOAD``), so this module only reports it and
names the preload line; it never changes the running process.
"""

from __future__ import annotations

import ctypes.util
import functools
from pathlib import Path
from typing import Literal

Malloc = Literal["tcmalloc", "jemalloc", "system"]

# Preferred first: tcmalloc needs no settings; jemalloc needs MALLOC_CONF below, or it returns freed
# pages to the kernel within seconds and faults more than glibc does.
PRELOADABLE: tuple[tuple[Malloc, str], ...] = (("tcmalloc", "tcmalloc_minimal"), ("tcmalloc", "tcmalloc"),
                                               ("jemalloc", "jemalloc"))
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # keep freed pages: no page faults per step


def malloc_in_use(maps: Path = Path("/proc/self/maps")) -> Malloc:
    """The malloc mapped into this process: a preloaded tcmalloc or jemalloc, else the system's."""
    try:
        mapped = maps.read_text()
    except OSError:  # not Linux: no /proc; report the system's
        return "system"
    for name in ("tcmalloc", "jemalloc"):
        if f"lib{name}" in mapped:
            return name  # type: ignore[return-value]
    return "system"


@functools.cache
def process_malloc() -> Malloc:
    """This process's malloc, read from its memory map once: it is chosen at the start (LD_PRELOAD) and
    never changes (the server reports it on /info and at startup)."""
    return malloc_in_use()


def installed() -> dict[Malloc, dict[str, str]]:
    """Each malloc this machine can run a process on -> the environment that starts one on it; the system's
    always, then tcmalloc and jemalloc where their libraries are installed."""
    found: dict[Malloc, dict[str, str]] = {"system": {}}
    for kind, lib in PRELOADABLE:
        try:
            soname = ctypes.util.find_library(lib)
        except OSError:  # ctypes reads a path out of gcc's stderr, which names a missing LD_PRELOAD library
            soname = None
        if soname and kind not in found:
            found[kind] = {"LD_PRELOAD": soname} | ({"MALLOC_CONF": JEMALLOC_CONF} if kind == "jemalloc" else {})
    return found


def preload_env() -> dict[str, str] | None:
    """The environment that preloads the preferred installed tcmalloc or jemalloc, or None if neither is."""
    return next((env for kind, env in installed().items() if kind != "system"), None)


def preload_line() -> str:
    """``preload_env`` as shell assignments (``LD_PRELOAD=libtcmalloc_minimal.so.4``), or "" if none."""
    return " ".join(f"{k}={v}" for k, v in (preload_env() or {}).items())


def malloc_advice(device_type: str) -> str:
    """One log line: the malloc in use and, for a CPU run on glibc's, the preload that avoids its page
    faults (or the package that provides one)."""
    used = malloc_in_use()
    if used != "system" or device_type != "cpu":
        return f"malloc: {used}"
    fix = preload_line() or "install libtcmalloc-minimal4 (Debian/Ubuntu) or gperftools"
    return (f"malloc: system (glibc); CPU training faults its memory in again at every step and runs "
            f"slower than on tcmalloc: start the process with {fix} (model/training/allocator.py)")


if __name__ == "__main__":  # `env $(python -m model.training.allocator) simgr train ...`
    import sys

    sys.stdout.write(preload_line() + "\n")
