# Two commands: `make run` starts the whole desk, `make test` runs the test suite.
# Both create .venv and install the pinned requirements first; only Python 3.11+ is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=

.PHONY: run test test-sqlite test-postgres install clean-var

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python manage.py run

test: test-sqlite test-postgres

# The whole suite on the embedded default (SQLite).
test-sqlite: install
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

# The same suite on PostgreSQL, where one answers (CI and developer machines have one;
# a fresh user machine may not, and then this pass says so and is skipped).
test-postgres: install
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" "$(TEST_POSTGRES_URL)" 2>/dev/null; then \
		echo "PostgreSQL pass: DATABASE_URL=$(TEST_POSTGRES_URL)"; \
		env -u REDIS_URL DATABASE_URL=$(TEST_POSTGRES_URL) $(BIN)/python -m pytest $(PYTEST_ARGS); \
	else \
		echo "PostgreSQL not reachable at $(TEST_POSTGRES_URL): PostgreSQL pass skipped"; \
	fi

clean-var:
	rm -rf var
