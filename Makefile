# resnest_plugin developer commands. The README's two commands:
#   make demo   set up the environment, then run the main job on the bundled data
#   make test   set up the environment if needed, then run the test suite
# Both serve the MMPose 0.x stack (.venv), the default. The MMPose 1.x stack
# (.venv-mmpose1) is chosen with STACK=mmpose1: `make setup STACK=mmpose1`,
# `make test STACK=mmpose1`, `make test-slow STACK=mmpose1`, `make bench STACK=mmpose1`.
STACK ?= mmpose0
ifeq ($(STACK),mmpose0)
VENV ?= .venv
else ifeq ($(STACK),mmpose1)
VENV ?= .venv-mmpose1
else
$(error STACK=$(STACK) not understood: expected mmpose0 (MMPose 0.x, the default) or mmpose1 (MMPose 1.x))
endif
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export STACK VENV

.PHONY: setup demo smoke test test-slow test-all bench reproduce clean-venv

setup:
	bash scripts/setup_env.sh

smoke: setup
	$(PY) scripts/smoke_check.py --stack $(STACK)

demo: setup
	$(PY) tools/run_demo.py

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS) tests

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS) tests

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS) tests

bench: setup
	$(PY) benchmarks/benchmark_backbone.py

reproduce: setup
	$(PY) tools/reproduce.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
