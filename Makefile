# Ko-Radiology-GPT: `make setup` once, then `make test`. Every target works offline after setup.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: setup test quality bench bench-gpu

setup: $(INSTALLED)
	$(PYTHON) -m ko_radiology.models prepare

# Re-installs only when requirements.txt changes, so a second `make setup` takes seconds.
# The project itself is installed editable, so `ko_radiology` imports from anywhere (the eval metric module needs it).
$(INSTALLED): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --requirement requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $(INSTALLED)

# Offline switches: no test may reach for the Hub.
test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PYTHON) -m pytest

quality: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# CPU benchmarks (each prints its numbers and its target); the GPU one needs CUDA: `make bench-gpu`.
CPU_BENCHES := bench/bench_sections.py bench/bench_llm_client.py bench/bench_sft_cpu.py

bench: setup
	@for script in $(CPU_BENCHES); do echo "== $$script"; $(PYTHON) $$script || exit 1; done

bench-gpu: setup
	$(PYTHON) bench/bench_qlora_gpu.py
