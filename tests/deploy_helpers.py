"""What the deployment tests share: the repository's deploy folder and how its YAML is read."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
API_PORT = 8000  # the container port: Dockerfile EXPOSE, compose api, prometheus target


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())
