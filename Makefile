# Ko-Radiology-GPT: `make setup` once, then `make test`. Every target works offline after setup.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: setup browser llama-cpp test quality docs bench bench-gpu gpu-check demo serve-demo pipeline pipeline-stages

setup: $(INSTALLED) browser
	$(PYTHON) -m ko_radiology.embedded_models prepare
	$(PYTHON) -m ko_radiology.llama_cpp fetch

# llama.cpp's llama-server, llama-bench and llama-quantize, compiled once into the cache (~20 min on 2 cores): the demo
# serves with llama-server once it is built (else with transformers serve), GGUF exports of type q4_k_m and the
# llama-server tests need them; everything else works without. It can build in another terminal while `make demo`
# trains.
llama-cpp: $(INSTALLED)
	$(PYTHON) -m ko_radiology.llama_cpp build

# Debian's Chromium and a Korean font for the Space's browser test (tests/test_space_browser.py). Playwright drives
# /usr/bin/chromium and never downloads a browser. Without root or apt this prints the command and goes on.
browser:
	@if [ -x /usr/bin/chromium ] && fc-list :lang=ko 2>/dev/null | grep -q .; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium fonts-noto-cjk; } || echo "apt-get failed; the browser test is skipped until it installs"; \
	else echo "browser test skipped until: sudo apt-get install chromium fonts-noto-cjk"; fi

# Re-installs only when requirements.txt or pyproject.toml changes, so a second `make setup` takes seconds.
# The lock first (requirements.txt: every extra, exactly pinned), then the project on top with --no-deps: editable by
# default, so its five packages and the `ko-radiology` command import this checkout from anywhere (the eval metric
# module needs that); EDITABLE=0 installs it as a wheel, as `pip install .` would (rerun after changing the code).
EDITABLE ?= 1
$(INSTALLED): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --requirement requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation $(if $(filter 1,$(EDITABLE)),--editable) .
	touch $(INSTALLED)

# Offline switches: no test may reach for the Hub.
test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PYTHON) -m pytest

quality: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The CPU recipe's measured numbers in README.md and in the recipe's header, rendered from docs/results/quality.json
# (copy a new run's out/adapters/KEY/adapter/quality.json there first); tests/test_docs.py fails when they differ.
docs:
	python3 docs/render_results.py

# Every benchmark in bench/ (each prints its numbers against its target), then one table with the machine and the date
# in bench/RESULTS.md; the GPU one runs where CUDA is, and is listed as skipped elsewhere.
bench: setup
	$(PYTHON) bench/run_all.py --out bench/RESULTS.md

bench-gpu: setup
	$(PYTHON) bench/bench_qlora_gpu.py

# The 7B QLoRA recipe end to end on a GPU with nothing downloaded (training/gpu_check.py): random weights with
# Qwen2.5-7B's shapes, training.sft, training.export, eval.check, and accelerate DDP on 2+ GPUs; one table, also in
# $(OUT)/gpu-check/gpu/summary.json. GPU_CHECK_FLAGS=--cpu-dry-run: the same commands on a 2-layer model on CPU.
GPU_CHECK_FLAGS ?=
gpu-check: setup
	$(PYTHON) -m training.gpu_check --out $(OUT)/gpu-check $(GPU_CHECK_FLAGS)

# ---- `make demo` and `make pipeline` -------------------------------------------------------------------------------
# Everything they write goes under $(OUT) (ignored by git). Each stage is a file target, so a second run redoes nothing
# that finished. Knobs: RECIPE (training recipe), TRAIN_FLAGS (flags after it), ENDPOINT/MODEL; for the pipeline below.
OUT ?= out
RECIPE ?= training/recipes/gemma3-270m-cpu.yaml
TRAIN_FLAGS ?=
# The merged model is served locally: merged in the policy's serving dtype (ko_radiology/hardware.py), float32.
MERGE_DTYPE ?= $(shell $(PYTHON) -m ko_radiology.hardware serve)
# `datasets` would draw several progress bars per 40-row table.
export HF_DATASETS_DISABLE_PROGRESS_BARS := 1

SAMPLE := $(OUT)/sample/hub
SAMPLE_FILES := $(shell find ko_radiology/sample -type f)
SHA256 := $(shell command -v sha256sum || echo shasum -a 256)

# The shipped sample with its gold translations and QA, as a Hub folder (what `load_dataset` and training read).
$(SAMPLE)/README.md: $(SAMPLE_FILES) | $(INSTALLED)
	$(PYTHON) -m dataset_builder build --data-dir ko_radiology/sample --gold --out $(OUT)/sample/build
	$(PYTHON) -m dataset_builder export $(OUT)/sample/build --out $(SAMPLE) --repo-id org/ko-cxr-qa

# An adapter is stored under a key that hashes the training data's files, the recipe and TRAIN_FLAGS: the same inputs
# never train twice, and an interrupted training resumes from its last checkpoint. The recipe's comment lines are left
# out: they change nothing trained (`make docs` rewrites the CPU recipe's header when a run is measured).
ADAPTERS := $(OUT)/adapters
# A recipe with a `dataset_mixture` names its datasets itself (the sample's folder is then not passed), and the key
# hashes the local files and folders its entries name too (an `id:` that is a path here).
MIXTURE := $(shell grep -q '^dataset_mixture:' $(RECIPE) 2>/dev/null && echo 1)
MIXED_PATHS := $(if $(MIXTURE),$(shell sed -n 's/^ *- *id: *\([^ #]*\).*/\1/p' $(RECIPE)))
mixed_files = $(foreach path,$(MIXED_PATHS),$(if $(wildcard $(path)/qa),$(wildcard $(path)/qa/*.parquet),$(wildcard $(path))))
training_key = $(shell { cat $(1)/qa/*.parquet $(mixed_files) /dev/null; grep -v '^\#' $(RECIPE); \
	echo '$(TRAIN_FLAGS)'; } | $(SHA256) | cut -c1-16)

$(ADAPTERS)/%/adapter/adapter_config.json:
	$(PYTHON) -m training.sft --config $(RECIPE) $(if $(MIXTURE),,--dataset_name $(TRAIN_DATA)) --output_dir $(@D) \
	    $(TRAIN_FLAGS)

$(ADAPTERS)/%/merged/config.json: $(ADAPTERS)/%/adapter/adapter_config.json
	$(PYTHON) -m training.export $(<D) --out $(@D) --dtype $(MERGE_DTYPE)

# The merged model as one Q8_0 GGUF beside it, for llama.cpp's llama-server (about a minute on 2 cores).
$(ADAPTERS)/%/merged-gguf/Modelfile: $(ADAPTERS)/%/merged/config.json
	$(PYTHON) -m training.export $(<D) --out $(@D) --format gguf --gguf-type q8_0

# Pattern-rule outputs would otherwise count as intermediate files, which make deletes.
.PRECIOUS: $(ADAPTERS)/%/adapter/adapter_config.json $(ADAPTERS)/%/merged/config.json \
	$(ADAPTERS)/%/merged-gguf/Modelfile

# `make demo`: sample → fine-tuned adapter → merged model → local server + Space, until Ctrl-C. The local server is
# llama.cpp's llama-server on the merged model's GGUF where `make llama-cpp` has built it, else transformers serve
# (SERVER=transformers or SERVER=llama.cpp to choose; `space.demo` prints which it took and why). Without the build
# no GGUF is made; an export that fails here is tried once more by `space.demo`, which then serves with transformers.
# `make demo ENDPOINT=http://host:8080/v1 MODEL=name`: the Space only, against that endpoint (not on loopback: also
# KO_RADIOLOGY_ALLOWED_HOSTS=host, the PhysioNet guard's list of hosts you run).
ifdef ENDPOINT
demo: $(INSTALLED)
	$(PYTHON) -m space.demo --endpoint $(ENDPOINT) $(if $(MODEL),--endpoint-model $(MODEL)) --log-dir $(OUT)/demo/logs
else
demo: setup $(SAMPLE)/README.md
	@$(MAKE) --no-print-directory serve-demo TRAIN_DATA=$(SAMPLE) KEY=$(call training_key,$(SAMPLE))
endif

SERVER ?= auto
DEMO_GGUF = $(ADAPTERS)/$(KEY)/merged-gguf

serve-demo: $(ADAPTERS)/$(KEY)/merged/config.json
	@if [ "$(SERVER)" != transformers ] && $(PYTHON) -m ko_radiology.llama_cpp path llama-server >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(DEMO_GGUF)/Modelfile || echo "The GGUF export failed; see its error above."; fi
	$(PYTHON) -m space.demo --model $(ADAPTERS)/$(KEY)/merged --server $(SERVER) --gguf-dir $(DEMO_GGUF) \
	    --log-dir $(OUT)/demo/logs

# `make pipeline`: the study, reproduced offline. Training data → adapter → answers of the untuned base and of the
# adapter on the sample's test split → reference metrics against the gold answers → the judge on five criteria →
# report. Outputs go to $(OUT)/pipeline/KEY/ (KEY: the adapter's); every stage prints what it wrote.
#   DATA=DIR                    train and evaluate on your own Hub folder (`dataset_builder export`), e.g. MIMIC-CXR's
#   GENERATE=1                  QA generated by a model (ENDPOINT=URL MODEL=name, else the local base model) instead of
#                               the sample's gold QA; translations stay gold (GENERATE_FLAGS to change that)
#   JUDGE=stand-in              the default: eval.stand_in_judge, a local server that scores by text rules (no LLM,
#                               seconds), labelled a stand-in for GPT-4; the embedded 270M model cannot judge
#   JUDGE=local                 the embedded base model served by space.demo (llama-server where built, else
#                               transformers serve, which took 14 min for 3 judgements on 2 CPU cores, every request
#                               timing out; for a bigger local model via JUDGE_LOCAL_MODEL)
#   JUDGE=URL JUDGE_MODEL=name  any OpenAI-compatible judge (JUDGE_FLAGS="--api-key-env OPENAI_API_KEY ...")
PIPELINE := $(OUT)/pipeline
BASE ?= embedded:base
CRITERIA ?= accuracy conciseness consistency understandability similarity
COMPARE_FLAGS ?=
CHECK_FLAGS ?=
GENERATE_FLAGS ?= --translator gold --generator llm
GENERATE_LOCAL_MODEL ?= embedded:base
JUDGE ?= stand-in
JUDGE_LOCAL_MODEL ?= embedded:base
ifeq ($(JUDGE),local)
# transformers serve ignores response_format and answers one request at a time; a small base model does not stop.
JUDGE_FLAGS ?= --no-structured-output --max-tokens 160 --max-concurrency 1 --timeout-s 600
endif
JUDGE_URL := $(filter-out local stand-in,$(JUDGE))
# Local servers of the embedded model serve in the policy's serving dtype (space.demo's default, float32).
JUDGE_SERVER := $(if $(filter local,$(JUDGE)),--model $(JUDGE_LOCAL_MODEL),--stand-in-judge)
JUDGE_MODEL ?= {model}
JUDGE_NAME := $(if $(JUDGE_URL),$(JUDGE_MODEL),$(JUDGE))
JUDGE_LABEL := $(if $(JUDGE_URL),$(JUDGE_MODEL) at $(JUDGE_URL),$(if $(filter local,$(JUDGE)),$(JUDGE_LOCAL_MODEL) \
	served locally,eval.stand_in_judge (text rules, no LLM)) - a local stand-in for GPT-4 that tests the pipeline, \
	not clinical quality)
ifeq ($(JUDGE_NAME),{model})
$(error JUDGE=$(JUDGE) needs JUDGE_MODEL=the model name that endpoint serves)
endif

EVAL_DATA := $(or $(DATA),$(SAMPLE))
ifdef DATA
ifeq ($(wildcard $(DATA)/qa),)
$(error DATA=$(DATA) has no qa/ folder; pass a folder written by `python -m dataset_builder export`)
endif
TRAIN_DATA_DIR := $(DATA)
else ifdef GENERATE
TRAIN_DATA_DIR := $(PIPELINE)/generated/hub
else
TRAIN_DATA_DIR := $(SAMPLE)
endif

# $(call with_server,SERVER_FLAGS,URL,COMMAND): COMMAND with {endpoint} set to URL, or, without URL, run under
# `space.demo SERVER_FLAGS --run`, which starts that local server for the command's duration and fills in {endpoint}
# and {model}.
with_server = $(if $(2),$(subst {endpoint},$(2),$(3)),$(PYTHON) -m space.demo $(1) --log-dir $(PIPELINE)/logs --run -- $(3))

$(PIPELINE)/generated/hub/README.md: $(SAMPLE_FILES) | $(INSTALLED)
	$(call with_server,--model $(GENERATE_LOCAL_MODEL),$(ENDPOINT),$(PYTHON) -m dataset_builder build \
	    --data-dir ko_radiology/sample --out $(PIPELINE)/generated/build $(GENERATE_FLAGS) \
	    --base-url {endpoint} --model $(if $(ENDPOINT),$(MODEL),{model}))
	$(PYTHON) -m dataset_builder export $(PIPELINE)/generated/build --out $(@D) --repo-id org/ko-cxr-qa-generated

pipeline: setup $(TRAIN_DATA_DIR)/README.md $(EVAL_DATA)/README.md
	@$(MAKE) --no-print-directory pipeline-stages TRAIN_DATA=$(TRAIN_DATA_DIR) KEY=$(call training_key,$(TRAIN_DATA_DIR))

RUN = $(PIPELINE)/$(KEY)
ADAPTER = $(ADAPTERS)/$(KEY)/adapter
REPORT = $(RUN)/report-$(JUDGE_NAME)

pipeline-stages: $(REPORT)/report.md $(ADAPTER)/quality.json
	@echo "Pipeline done."
	@echo "  adapter and its reference metrics against the gold answers: $(ADAPTER)/quality.json"
	@echo "  answers of the base and the fine-tuned model: $(RUN)/answers.csv"
	@echo "  judge report (judge: $(JUDGE_NAME)): $(REPORT)/report.md, $(REPORT)/scores.png"
	@$(if $(JUDGE_URL),,echo "  The $(JUDGE) judge is a local stand-in for GPT-4: it tests the pipeline, not clinical quality.")

$(RUN)/answers.csv: $(ADAPTER)/adapter_config.json $(EVAL_DATA)/README.md
	$(PYTHON) -m eval.compare --input $(EVAL_DATA) --split test --out $@ --cache-path $(RUN)/llm_cache.sqlite \
	    --model base=$(BASE) --model fine-tuned=$(ADAPTER) $(COMPARE_FLAGS)

$(ADAPTER)/quality.json: $(ADAPTER)/adapter_config.json $(EVAL_DATA)/README.md
	$(PYTHON) -m eval.check $(ADAPTER) --split test --dataset $(EVAL_DATA) $(CHECK_FLAGS)

$(RUN)/judge-$(JUDGE_NAME)/scored-%.csv: $(RUN)/answers.csv
	$(call with_server,$(JUDGE_SERVER),$(JUDGE_URL),$(PYTHON) -m eval.judge --input $< --type $* --out $@ \
	    --cache-path $(@D)/llm_cache.sqlite --judge-base-url {endpoint} --judge-model $(JUDGE_MODEL) $(JUDGE_FLAGS))

$(REPORT)/report.md: $(foreach criterion,$(CRITERIA),$(RUN)/judge-$(JUDGE_NAME)/scored-$(criterion).csv)
	$(PYTHON) -m eval.report $^ --out $(@D) --judge "$(JUDGE_LABEL)"
