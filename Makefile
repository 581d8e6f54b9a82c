# The README's two commands are `make demo` and `make test`; everything they
# need is installed into .venv from requirements.lock (hash-checked).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: all venv test lint demo bench deb systemd-test clean

all: test

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock requirements-dev.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

lint: venv
	$(BIN)/ruff check buzzbotd tests

test: lint
	$(BIN)/pytest

demo: venv
	@echo "make demo: not yet (arrives with issue 6)"

bench: venv
	@echo "make bench: not yet (arrives with issue 6)"

deb:
	@echo "make deb: not yet (arrives with issue 5)"

systemd-test:
	@echo "make systemd-test: not yet (arrives with issue 5)"

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
