# The README's two commands are `make demo` and `make test`; everything they
# need is installed into .venv from requirements.lock (hash-checked).
# Tests are marked by what they reach (tests/support/marks.py): process,
# postgres, tool automatically, long by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: all venv test test-fast trials lint demo bench wheels deb systemd-test systemd-test-amd64 \
        systemd-test-upgrade systemd-test-arm64 piuparts clean

all: test

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock requirements-dev.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	TORNADO_EXTENSION=0 $(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

lint: venv
	$(BIN)/ruff check buzzbotd tests tools

# Everything but the minutes-long runs (≤ 10 min on a 2-core machine). The
# tests mostly wait on daemons, fakes and clocks: two files run at a time, each
# file's tests in order in one worker (a module's fixtures stay shared).
test: lint
	$(BIN)/pytest -n 2 --dist loadfile -m "not long"

# Only what runs in this process: no daemon, no PostgreSQL, no outside tool
# (under a minute; two files at a time, as make test).
test-fast: lint
	$(BIN)/pytest -n 2 --dist loadfile -m "not process and not postgres and not tool and not long" \
	    --durations=10

# The kill -9 and failover trials at length (20 each), and the quick bench run
# (tests marked long; ~10 min).
trials: venv
	$(BIN)/pytest -n 2 --dist loadfile -m long

# Local stand-ins of X, Telegram and the price API on 127.0.0.1, the real
# daemon against them; ends by itself within a minute.
demo: venv
	$(BIN)/python -m tools.demo

# Every figure beside its baseline, measured in the same run (BENCHMARKS.md).
bench: venv
	$(BIN)/python -m tools.bench

# The Debian package (see the end of README.md). `make deb` downloads the
# hash-checked files of requirements.lock into a cache outside the repo (so a
# rebuild needs no network), builds dist/buzzbotd_<version>_all.deb with
# dpkg-buildpackage, and runs lintian on it (errors and warnings fail).
# Needs, as on the CI machine: apt-get build-dep ./ && apt-get install lintian
BUZZBOTD_WHEELS ?= $(HOME)/.cache/buzzbotd-wheels
DEB_PYTHON ?= /usr/bin/python3
DIST ?= dist
# (read with sed: this is expanded by every make run, dpkg-dev or not)
DEB_VERSION = $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DEB_ARCH = $(shell dpkg --print-architecture)
DEB = $(DIST)/buzzbotd_$(DEB_VERSION)_all.deb
DEB_CHANGES = $(DIST)/buzzbotd_$(DEB_VERSION)_$(DEB_ARCH).changes
DEB_SOURCES = requirements.lock $(shell find buzzbotd debian systemd doc etc -type f \
    -not -path 'debian/buzzbotd/*' -not -path 'debian/.debhelper/*' -not -name '*.pyc' \
    -not -name files -not -name '*.substvars' -not -name '*.debhelper*' -not -name '*-stamp')

wheels:
	$(DEB_PYTHON) -m pip download --quiet --disable-pip-version-check \
	    --require-hashes --no-deps --only-binary=:all: --no-binary=sdnotify,tornado \
	    --no-build-isolation --dest "$(BUZZBOTD_WHEELS)" -r requirements.lock

$(DEB): $(DEB_SOURCES)
	$(MAKE) wheels
	mkdir -p $(DIST)
	BUZZBOTD_WHEELS="$(BUZZBOTD_WHEELS)" BUZZBOTD_DEB_DIR="$(abspath $(DIST))" \
	    dpkg-buildpackage -us -uc -b \
	    --buildinfo-option=-u$(DIST) --changes-option=-u$(DIST) \
	    --buildinfo-file=$(DIST)/buzzbotd_$(DEB_VERSION)_$(DEB_ARCH).buildinfo \
	    --changes-file=$(DEB_CHANGES)

deb: $(DEB)
	lintian --display-info --fail-on error,warning $(DEB_CHANGES)
	@ls -l $(DEB)

# The package under a real systemd (README.md, "Debian package"), as root.
# Each part is a target of its own; `make -k systemd-test` runs all of them
# even when one fails. Trees and the previous release's .deb are cached in
# /var/cache/buzzbotd-test.
systemd-test: systemd-test-amd64 systemd-test-upgrade piuparts systemd-test-arm64

# install, readiness, watchdog, restarts, hardening, posting, journal, purge
systemd-test-amd64: $(DEB)
	bash tests/systemd/run.sh $(DEB)

# from the previous release (tag 0.1.0, built by tests/systemd/prev_deb.sh)
systemd-test-upgrade: $(DEB)
	bash tests/systemd/upgrade.sh $(DEB)

# Debian's piuparts: install/remove/purge and the upgrade (needs the network)
piuparts: $(DEB)
	bash tests/systemd/piuparts.sh $(DEB)

# arm64 (a Raspberry Pi's architecture) emulated by qemu-user-static
systemd-test-arm64: $(DEB)
	bash tests/systemd/arm64.sh $(DEB)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
