# resnest_plugin developer commands. The README's two commands:
#   make demo   set up the environment, then run the main job on the bundled data
#   make test   set up the environment if needed, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo smoke test test-slow test-all bench reproduce clean-venv

setup:
	bash scripts/setup_env.sh

smoke: setup
	$(PY) scripts/smoke_check.py

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
