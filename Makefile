# Two commands: `make run` starts the whole desk, `make test` runs the test suite.
# Both create .venv and install the pinned requirements first; only Python 3.11+ is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=
# Each pass spreads its test files over this many pytest-xdist workers (each with its own test
# database, Redis and var dir: tests/process_plugin.py); 0 runs a pass in one process.
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist load --maxschedchunk 1

.PHONY: run test lint test-sqlite test-postgres test-reliability test-recordings install clean-var

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python manage.py run

# The two passes run side by side (their output is shown per pass as each ends): most of the
# suite's time is spent waiting on desk processes, Redis and PostgreSQL, not on the CPU.
test: lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

# No dependency's private names (ruff: SLF001, PLC2701) and imports that point one way
# (import-linter's contracts); both configured in pyproject.toml.
lint: install
	$(BIN)/ruff check
	$(BIN)/lint-imports

# The whole suite on the embedded default (SQLite).
test-sqlite: install
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The tests whose behaviour depends on the database or the broker (marker `backend`, set in
# tests/conftest.py), again on PostgreSQL and the machine's Redis, where they answer (CI
# and developer machines have them; a fresh user machine may not: then this pass says so
# and is skipped, or runs on the bundled Redis). A later -m in PYTEST_ARGS replaces this one.
test-postgres: install
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$(TEST_POSTGRES_URL)" 2>/dev/null; then \
		if $(BIN)/python -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()" "$(TEST_REDIS_URL)" 2>/dev/null; \
		then redis_url="$(TEST_REDIS_URL)"; else redis_url=""; fi; \
		echo "PostgreSQL pass: DATABASE_URL=$(TEST_POSTGRES_URL) REDIS_URL=$${redis_url:-bundled}"; \
		env -u REDIS_URL DATABASE_URL=$(TEST_POSTGRES_URL) $${redis_url:+REDIS_URL=$$redis_url} $(BIN)/python -m pytest $(XDIST) -m "backend and not reliability" $(PYTEST_ARGS); \
	else \
		echo "PostgreSQL not reachable at $(TEST_POSTGRES_URL): PostgreSQL pass skipped"; \
	fi

# The long fault scenarios (tests/reliability, marker `reliability`: a 30 s Redis outage,
# minutes of SQLite writes), on both passes like `make test`, which leaves them out.
test-reliability:
	$(MAKE) test PYTEST_ARGS="-m reliability tests/reliability $(PYTEST_ARGS)"

# Every recording under ../shared/recordings (or TRIFECTA_RECORDINGS) replayed with default
# settings, its report held to issue 27's checks (marker `recordings`; skipped where absent),
# two replays at a time (each is one process).
test-recordings: install
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest $(XDIST) -m recordings tests/recordings $(PYTEST_ARGS)

clean-var:
	rm -rf var

# Benchmarks print figures beside a baseline measured in the same run and write
# bench/results/NAME.json; record each result with its command in bench/RESULTS.md.
# `make bench-NAME` runs bench/NAME.py (dashes become underscores).
# `make soak`: the whole desk under load for SOAK_SECONDS (default 600), bench/soak.py.
.PHONY: soak
soak: install
	cd bench && ../$(BIN)/python soak.py

BENCHES := replay-open scan decide execute surfaces replay instructions sweep
.PHONY: $(addprefix bench-,$(BENCHES))
$(addprefix bench-,$(BENCHES)): bench-%: install
	cd bench && ../$(BIN)/python $(subst -,_,$*).py
