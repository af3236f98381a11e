"""The methods `simgr train --method M` can train: SimGR and the baselines, by name."""

from __future__ import annotations

from model.baselines.autoregressive import AutoregressiveMethod
from model.baselines.latte import LatteMethod
from model.baselines.parallel import ParallelMethod
from model.baselines.sasrec import SASRecMethod
from model.methods.base import Method
from model.methods.simgr import SimGRMethod

METHODS: dict[str, Method] = {
    "simgr": SimGRMethod(),  # the paper's method: one forward pass, exact full ranking
    "sasrec": SASRecMethod(),  # ID-based transformer (Kang & McAuley, 2018)
    "autoregressive": AutoregressiveMethod(),  # TIGER/LC-Rec: SID tokens decoded with constrained beam search
    "parallel": ParallelMethod(),  # RPG-style: independent per-level code heads
    "latte": LatteMethod(),  # latent reasoning tokens before the SID decode
}


def get_method(name: str) -> Method:
    """The method registered under ``name``; ValueError listing the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_names() -> list[str]:
    return sorted(METHODS)
