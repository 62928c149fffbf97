# vfd — set-up, run and test on Debian 12 as root.
#   make run    install everything and run vfd in the foreground (vfd up, system paths); starts
#               dockerd when it is installed but not running, so that sessions are on
#   make test   install everything, start PostgreSQL and dockerd, build the session tests'
#               image, run ruff, mypy and the whole test suite
#   make bench-sessions   the session start-up benchmark (benchmarks/session_bench.py)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
APT_PACKAGES := fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv attr fio \
                postgresql postgresql-client util-linux procps docker.io busybox-static \
                nginx-light curl openssh-client chromium nodejs

.PHONY: run test setup system-deps venv install docker test-image lint typecheck pytest \
        pytest-fast-path-off console-js bench bench-sessions clean

# Sessions need docker: without it (or when dockerd cannot start here) vfd runs all the same,
# and `vfd up` says that sessions are off and how to turn them on.
run: install
	@scripts/start-docker.sh && scripts/build-test-image.sh || \
	  echo "make: docker is not available; vfd runs without sessions"
	VFD_TCP_LISTEN=$${VFD_TCP_LISTEN:-127.0.0.1:8090} $(BIN)/vfd up

test: install docker test-image
	. scripts/start-postgres.sh && $(MAKE) --no-print-directory lint typecheck console-js pytest pytest-fast-path-off

setup: install

system-deps: .stamp-apt
.stamp-apt: Makefile
	@if [ "$$(id -u)" != 0 ]; then echo "make: run as root (apt-get, FUSE mounts)"; exit 1; fi
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@grep -q '^user_allow_other' /etc/fuse.conf 2>/dev/null || echo user_allow_other >> /etc/fuse.conf
	touch $@

venv: system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip wheel 2>&1 | grep -v '^WARNING: Location' || true

install: venv
	$(BIN)/pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/python -c 'import vfd, pyfuse3, fastapi, sqlmodel' || { echo "make: the install is incomplete"; exit 1; }
	@# bytecode for vfd's modules, as pip writes it when it installs a wheel: the editable
	@# install leaves it to the first import, which writes nothing under PYTHONDONTWRITEBYTECODE
	@$(BIN)/python -m compileall -q src/vfd
	@ln -sf $(CURDIR)/$(BIN)/vfd /usr/local/bin/vfd

# the local docker engine (started when it does not answer) and the image the session tests
# and the README's examples run (no registry is needed: it is built from busybox-static)
docker: system-deps
	scripts/start-docker.sh

test-image: docker
	scripts/build-test-image.sh

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck:
	$(BIN)/mypy src/vfd

# the console's own tests: its logic under node --test, and axe-core (npm ci) for the browser
# tests to inject. Node.js serves tests only: the console ships as plain files in the package.
# (npm apart from APT_PACKAGES: NodeSource's nodejs bundles it and conflicts with Debian's.)
console-js: system-deps
	@command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
	cd console && npm ci --no-audit --no-fund
	node --test tests/console/js/

pytest:
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

# the tests that use real mounts once more, with mountd on pyfuse3's public API alone (what it
# falls back to where pyfuse3 or libfuse are not verified releases): docs/architecture.md.
# On SQLite only: the store backend does not meet the fast path. (files before fuse: both
# have a conftest module of the same name, and tests/fuse imports its own.)
pytest-fast-path-off:
	VFD_FUSE_FAST_PATH=off $(BIN)/pytest -p no:cacheprovider -m "not postgres" tests/files tests/fuse

bench: install
	$(BIN)/python benchmarks/fuse_bench.py

bench-sessions: install test-image
	$(BIN)/python benchmarks/session_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .stamp-apt build *.egg-info
