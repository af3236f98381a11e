"""Shared fixtures: tiny synthetic datasets, tiny trained runs and random-init bundles (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SIMGR_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny SimGR bundle with 200 items (item-0 .. item-199)."""
    from model.export.synthetic import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "tiny", n_items=200, preset="tiny")


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset (with semantic IDs) where item i is always followed by item i+1."""
    from model.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", n_users=48, n_items=30)


@pytest.fixture(scope="session")
def quant_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 items with text, coded by a tiny RQ-VAE over MiniLM embeddings (quantizer saved)."""
    from catalog_helpers import make_text_dataset

    return make_text_dataset(tmp_path_factory.mktemp("qdata") / "data")


@pytest.fixture(scope="session")
def quant_bundle_dir(quant_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny bundle over ``quant_data_dir``'s items, with its item quantizer."""
    from model.export.synthetic import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("qbundle") / "bundle", preset="tiny", data_dir=quant_data_dir)


@pytest.fixture(scope="session")
def compose() -> dict:
    """docker-compose.yml, parsed (read-only)."""
    from deploy_helpers import ROOT, load_yaml

    return load_yaml(ROOT / "docker-compose.yml")
