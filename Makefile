# Set-up and everyday commands. Everything installs into .venv/ at the repository root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-fast check fuzz install install-all browser clean-venv strip-notebooks

# The service with the shipped model (inference stack only: no torch). API keys are required:
# on the first start an admin key is created and printed once (paste it into the web page).
serve: $(VENV)/.base
	@$(VENV)/bin/wildscan keys list | grep -q active || { \
		echo "First start: an admin API key was created for you (shown only once):"; \
		$(VENV)/bin/wildscan keys add admin --admin; }
	$(VENV)/bin/wildscan serve --host $(HOST) --port $(PORT)

# The whole test suite, with everything it needs (training stack, Ray, a real chromium),
# after the lint, format and type checks.
test: $(VENV)/.all browser check
	$(PY) -m pytest -ra

# ruff (lint + format) over the code, mypy over the inference and serving packages.
check: $(VENV)/.all
	$(VENV)/bin/ruff check vision serving training tests benchmarks
	$(VENV)/bin/ruff format --check vision serving training tests benchmarks
	$(VENV)/bin/mypy

test-fast: $(VENV)/.all
	$(PY) -m pytest -ra -m "not slow and not browser"

# Mutated real photos through the decoding path (benchmarks/fuzz_images.py); CASES=100000 by default.
fuzz: $(VENV)/.all
	$(PY) benchmarks/fuzz_images.py --cases $(or $(CASES),100000)

install: $(VENV)/.base
install-all: $(VENV)/.all

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.base: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[openvino]'
	touch $@

$(VENV)/.all: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[train,ray,dev,openvino]'
	touch $@ $(VENV)/.base

# Debian's chromium for the web-page test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean-venv:
	rm -rf $(VENV)

# Notebooks are committed without outputs (tests/test_notebooks.py checks it).
strip-notebooks: $(VENV)/.all
	$(PY) notebooks/strip_outputs.py
