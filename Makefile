# resnest_plugin developer commands. The README's two commands:
#   make demo   set up the environment, then run the main job on the bundled data
#   make test   set up the environment if needed, then run the test suite
# Both serve the default row of the support matrix, MMPose 0.x on Python 3.11 +
# torch 2.14.1 (.venv). STACK=<row> picks another row, each in its own venv
# .venv-<row> with the pins of requirements/<row>/constraints.txt
# (docs/compatibility.md): `make setup STACK=mmpose1`, `make test STACK=mmpose1`,
# `make test-slow STACK=mmpose1`, `make test-matrix STACK=mmpose0-legacy`, ...
STACKS := mmpose0 mmpose0-legacy mmpose1 mmpose1-torch2.1 mmpose1-newest
STACK ?= mmpose0
ifeq ($(filter $(STACK),$(STACKS)),)
$(error STACK=$(STACK) not understood: expected one of $(STACKS))
endif
ifeq ($(STACK),mmpose0)
VENV ?= .venv
else
VENV ?= .venv-$(STACK)
endif
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export STACK VENV

.PHONY: setup demo smoke test test-slow test-matrix test-all bench reproduce clean-venv

setup:
	bash scripts/setup_env.sh

smoke: setup
	$(PY) scripts/smoke_check.py --stack $(STACK)

demo: setup
	$(PY) tools/run_demo.py

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS) tests

test-slow: setup
	$(PY) -m pytest -m "slow and not heavy" $(PYTEST_ARGS) tests

# What every row of the matrix must pass (.ci/run runs it on the rows beside
# the two full ones): the host-free default tests, the installed wheel with the
# stock tools, save -> --resume with save_best, the reproduction identity test.
test-matrix: setup
	$(PY) -m pytest -m "(not slow and not host) or matrix" $(PYTEST_ARGS) tests

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS) tests

bench: setup
	$(PY) benchmarks/benchmark_backbone.py

reproduce: setup
	$(PY) tools/reproduce.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
