# Fanout: `make demo` runs the service on embedded services, `make test` runs the tests
# against real Postgres, Redis and the Snowflake emulator. Both install what they need.

VENV := .venv
PY := $(VENV)/bin/python
BOOT_PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: redis-server for the demo and the tests, chromium for the browser tests,
# npm for axe-core (the browser tests' accessibility checks), and wrk for `make bench`.
# mypy imports the settings: they need a database URL (never connected to) and debug mode.
LINT_ENV := DJANGO_DEBUG=1 DATABASE_URL=postgresql://lint@127.0.0.1:1/lint
AXE_VERSION := 4.14.1
AXE := tests/browser/vendor/node_modules/axe-core/axe.min.js

.PHONY: demo manage test lint bench profile system-deps redis-deps clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(BOOT_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12) and "Fanout needs Python 3.12+; set BOOT_PYTHON")'
	$(BOOT_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

# Installs the Debian packages named in $(1) whose command ($(2)) is missing.
define apt_install
	@missing=""; \
	for pair in $(1); do command -v $${pair#*:} >/dev/null || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

redis-deps:
	$(call apt_install,redis-server:redis-server)

system-deps:
	$(call apt_install,redis-server:redis-server chromium:chromium npm:npm)

demo: $(VENV)/.installed redis-deps
	$(PY) -m devtools.services demo

# manage.py against the running demo, from a second terminal: make manage ARGS='cache_status'
manage: $(VENV)/.installed
	@$(PY) -m devtools.services manage $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(LINT_ENV) $(VENV)/bin/mypy .

$(AXE): Makefile
	npm install --silent --no-save --no-audit --no-fund --prefix tests/browser/vendor axe-core@$(AXE_VERSION)
	touch $@

# A loaded CI machine can stall a Redis reply past the production timeout (0.2 s); that trips
# the cache's breaker, and tests that are not about outages then see the cache as down
# (rate limits open, copies unchecked). The outage tests set their own short timeouts.
test: $(VENV)/.installed system-deps $(AXE)
	REDIS_TIMEOUT=2 REDIS_CONNECT_TIMEOUT=2 $(PY) -m devtools.services run --data-dir .data/test --fresh --redis -- $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed system-deps
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	$(PY) -m devtools.services run --data-dir .data/bench --fresh --redis -- $(PY) -m bench

# Where a request's time goes: make profile PROFILE_ARGS="/api/me /api/tpa/tpas"
profile: $(VENV)/.installed
	$(PY) -m devtools.services run --data-dir .data/bench --fresh --redis -- $(PY) -m bench.profile $(PROFILE_ARGS)

clean:
	rm -rf .data/test .data/bench .pytest_cache
