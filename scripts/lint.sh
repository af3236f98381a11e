#!/usr/bin/env bash
# ruff over everything, mypy over the library and service layers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${SIMGR_VENV:-.venv}/bin"
"$BIN/ruff" check model index service tests benchmarks deploy
"$BIN/mypy" model index service
