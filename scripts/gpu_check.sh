#!/usr/bin/env bash
# The GPU runs of reports/quality section 5 as one device call: `base`-preset SimGR on Instruments under a
# wall-clock budget, then test NDCG@10 on every test user, one JSON line (also written to $OUT/quality.json).
#
#   bash scripts/gpu_check.sh prepare   # here, once: the data and the wheels the device image lacks
#   bash scripts/gpu_check.sh run       # there: device run with carry [".gpu", ".whl"], timeout_s 600
#
# The device's image has torch, transformers, peft and numpy but not pydantic, and cannot reach PyPI or the
# ../shared folder beside this checkout, so `prepare` copies both into ignored folders that the call carries.
# benchmarks/quality.py is the entry point: the `simgr` CLI would also import FAISS, which that image lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${SIMGR_GPU_DATA:-../shared/data/instruments}"
BUDGET_MIN="${SIMGR_GPU_BUDGET_MIN:-6}"     # training budget; with data and evaluation, under 9 minutes
PRESET="${SIMGR_GPU_PRESET:-base}"
STAGE="${SIMGR_GPU_STAGE:-.gpu}"            # the carried data folder (ignored by git)
WORKDIR="${SIMGR_GPU_WORKDIR:-/tmp/simgr-gpu}"  # the run's data and checkpoints, not carried back
PYTHON="${PYTHON:-python3}"
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5)  # as in this venv

prepare() {
  mkdir -p "$STAGE/instruments" .whl
  cp "$DATA"/Instruments.inter.json "$DATA"/Instruments.index.json "$STAGE/instruments/"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  du -sh "$STAGE" .whl
}

run() {
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the project is not installed there
  if ! "$PYTHON" -c "import pydantic" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
  fi
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  local out="${OUT:-/tmp}"
  # the Instruments recipe of section 1 (spread IDs, label smoothing, weight average), on the GPU preset
  PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/quality.py --data "$STAGE/instruments" --budget-min "$BUDGET_MIN" \
    --recipe instruments --preset "$PRESET" --workdir "$WORKDIR" "$@" 2> "$out/quality.log" \
    | tee "$out/quality.json"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare|run [quality.py flags]" >&2; exit 2 ;;
esac
