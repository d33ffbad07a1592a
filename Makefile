# Fanout: `make demo` runs the service on embedded services, `make test` runs the tests
# against real Postgres, Redis and the Snowflake emulator. Both install what they need.

VENV := .venv
PY := $(VENV)/bin/python
BOOT_PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: redis-server and chromium for the tests, and wrk for `make bench`.

.PHONY: demo test bench system-deps clean lint

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(BOOT_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12) and "Fanout needs Python 3.12+; set BOOT_PYTHON")'
	$(BOOT_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(VENV)/.installed
	$(PY) -m devtools.services demo

test: $(VENV)/.installed system-deps
	$(PY) -m devtools.services run --data-dir .data/test --fresh --redis -- $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed system-deps
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	$(PY) -m devtools.services run --data-dir .data/bench --fresh --redis -- $(PY) -m bench

clean:
	rm -rf .data/test .data/bench .pytest_cache
