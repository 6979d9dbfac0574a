# playbalancer: `make demo` runs the demo, `make test` runs the test suite.
# Both create the virtualenv in .venv and install the project into it first;
# `make test` first sees to the Debian packages the tests use (system-deps).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PYPY ?= $(shell command -v pypy3)
PYPY_VENV ?= .venv-pypy
# Extra arguments for trial, e.g. TRIAL_ARGS=-j2 to run two workers.
TRIAL_ARGS ?=

.PHONY: install demo system-deps test test-pypy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# Build Twisted's plugin cache now, so that it is never stale later.
	$(BIN)/python -c "from playbalancer.schedulers import availableSchedulers; print('schedulers:', ', '.join(sorted(availableSchedulers())))"
	touch $(STAMP)

install: $(STAMP)

# The starter config shipped in the package (etc/playbalancer.toml is it).
demo: $(STAMP)
	$(BIN)/playbalancer-demo

# Chromium and chromedriver (the browser tests need them), etcd (cluster
# tests) and PyPy: installed when missing if run as root, else named in one
# line; only a missing Chromium or chromedriver stops the tests.
system-deps:
	@tools/system-deps chromium chromium-driver npm

# What the browser tests load into the page (axe-core), from the npm
# registry at install time, never at run time.
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	touch $(AXE)

test: system-deps $(STAMP) $(AXE)
	$(BIN)/python -m twisted.trial $(TRIAL_ARGS) tests

# The same suite on PyPy (Debian's pypy3 and pypy3-venv packages).
test-pypy: system-deps $(AXE)
	@test -n "$(PYPY)" || { echo "pypy3 not found (apt-get install pypy3 pypy3-venv)"; exit 1; }
	test -x $(PYPY_VENV)/bin/python || $(PYPY) -m venv $(PYPY_VENV)
	$(PYPY_VENV)/bin/python -m pip install --quiet --prefer-binary -c constraints/pypy.txt -e '.[test]'
	$(PYPY_VENV)/bin/python -m twisted.trial $(TRIAL_ARGS) tests

clean:
	rm -rf $(VENV) $(PYPY_VENV) _trial_temp build *.egg-info
