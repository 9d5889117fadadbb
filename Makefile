# ringgen developer tasks.
#
# `make test` and `make demo` work on a fresh clone with nothing installed by hand: both depend on
# `setup`, which creates .venv, installs ringgen editable with its dev and opencl extras, and makes
# sure an OpenCL platform exists (PoCL). Setup is idempotent: once done it costs about a second.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RINGGEN := $(VENV)/bin/ringgen
# Rebuilt whenever pyproject.toml changes (new dependencies, new extras).
STAMP := $(VENV)/.ringgen-setup
# Every module in examples/ declares messages and kernels, except the package marker and the demo.
EXAMPLES := $(sort $(filter-out examples/__init__.py examples/demo.py,$(wildcard examples/*.py)))

.PHONY: help setup opencl-platform generate check test soak demo format bench

help:
	@echo "make setup     create .venv, install ringgen (editable, extras dev+opencl), ensure PoCL"
	@echo "make generate  rebuild generated/ from every module in examples/"
	@echo "make check     compile every generated package with the toolchains present"
	@echo "make test      pytest -m 'not gpu' (includes the stale generated/ check)"
	@echo "make soak      the graph soaks alone: 10,000,000 messages on PoCL and c (add gpu: 100,000,000)"
	@echo "make demo      build the examples and run each kernel on the best backend present"
	@echo "make format    black over the Python sources"
	@echo "make bench     run the benchmarks in bench/"

setup: $(STAMP) opencl-platform

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing ringgen (editable, extras dev+opencl) into $(VENV); log in $(VENV)/setup.log"
	@$(PY) -m pip install --disable-pip-version-check -e ".[dev,opencl]" >$(VENV)/setup.log 2>&1 \
		|| { cat $(VENV)/setup.log; echo "setup: pip install failed (log above)"; exit 1; }
	@touch $@

# PyOpenCL needs an ICD platform; PoCL (a CPU OpenCL) is the one CI and developers use.
opencl-platform: $(STAMP)
	@if $(PY) -c "import sys, pyopencl as cl; sys.exit(0 if cl.get_platforms() else 1)" >/dev/null 2>&1; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "setup: no OpenCL platform found; installing PoCL with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			pocl-opencl-icd ocl-icd-opencl-dev >/dev/null; \
	else \
		echo "setup: no OpenCL platform found. Install PoCL as root:"; \
		echo "         apt-get install pocl-opencl-icd ocl-icd-opencl-dev"; \
		echo "       until then, OpenCL tests and checks are skipped."; \
	fi

generate: setup
	$(RINGGEN) build $(EXAMPLES) -o generated

check: setup
	@set -e; found=0; for d in generated/*/; do \
		if [ -f "$$d/manifest.json" ]; then found=1; $(RINGGEN) check "$$d"; fi; \
	done; [ $$found = 1 ] || echo "check: nothing in generated/; run make generate first"

# The stale-generated check is tests/test_generated_fresh.py: it regenerates every example into a
# temporary folder and fails, telling you to run `make generate` and commit, when generated/ differs.
test: setup
	$(PY) -m pytest -m "not gpu" -q

# The graph soaks (tests/test_graph_soak.py) alone; `make test` runs them too (under 3 minutes here).
# SOAK_MARK="gpu and soak" runs the 100,000,000-message GPU soak on a CUDA machine.
SOAK_MARK ?= soak and not gpu
soak: setup
	$(PY) -m pytest -m "$(SOAK_MARK)" -q -s tests/test_graph_soak.py

demo: setup generate
	$(PY) examples/demo.py

format: setup
	$(PY) -m black ringgen tests examples bench

# Each benchmark prints a table and writes JSON + PNG under bench/results/. The CUDA one needs a GPU
# (PyCUDA): on a machine without one it says so and exits; .ci/gpu runs it on the GPU machine.
bench: setup
	$(PY) bench/opencl.py
	$(PY) bench/bridged.py
	@if $(PY) -c "import pycuda.driver as d; d.init(); assert d.Device.count()" >/dev/null 2>&1; then \
		$(PY) bench/cuda.py; \
	else echo "bench: no CUDA device here; bench/cuda.py runs on a GPU machine (.ci/gpu)"; fi
