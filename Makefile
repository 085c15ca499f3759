# Two commands on a fresh machine with only python3: `make run` and `make test`.
# Both create .venv when it is missing and reinstall only when pyproject.toml changed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The embedded default keeps its files here (SQLite, filesystem Celery broker, media).
VAR := $(or $(VAR_DIR),var)
DEMO_PASSWORD := billing-demo
# pytest-xdist workers, each with its own test database (test_<name>_gw0, ...). Measured
# on 2 cores with 338 tests: SQLite 48 s with 2 workers against 74 s serial, PostgreSQL
# 62 s against 76 s. PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
BENCH_DATABASE_URL := postgres://postgres@127.0.0.1:5432/billing_bench

.PHONY: run test bench lint setup

setup: $(INSTALLED)
	@mkdir -p "$(VAR)/celery-broker/processed" "$(VAR)/media" "$(VAR)/static"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

test: setup
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest -n $(PYTEST_WORKERS)

run: export DEBUG = true
run: setup
	$(PY) manage.py migrate --no-input
	$(PY) manage.py sync_beat_schedule
ifeq ($(DATABASE_URL),)
	$(PY) manage.py seed_demo --admin-password $(DEMO_PASSWORD)
	@echo
	@echo "  Log in at http://127.0.0.1:8000/admin/ as admin / $(DEMO_PASSWORD)"
	@echo "  (a demo superuser, created only on the embedded default database)."
else
	$(PY) manage.py seed_demo
	@echo
	@echo "  Log in at http://127.0.0.1:8000/admin/ with a superuser of that database"
	@echo "  (none is created when DATABASE_URL is set: $(PY) manage.py createsuperuser)."
endif
	@echo "  Web, Celery worker and Celery beat follow (Procfile.dev); Ctrl-C stops them."
	@echo
	@# Ctrl-C: honcho stops the three and exits with 130, which is how a quick start ends.
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile.dev || [ $$? -eq 130 ]

# Benchmarks need PostgreSQL: DATABASE_URL when set, else a local database billing_bench
# (bench/run.py creates it when missing and keeps the data set between runs).
bench: setup
ifeq ($(DATABASE_URL),)
	@echo "DATABASE_URL is not set: benchmarking on $(BENCH_DATABASE_URL)"
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) bench/run.py
else
	$(PY) bench/run.py
endif

lint: setup
	$(PY) -m pip install --quiet --disable-pip-version-check ruff
	$(PY) -m ruff check .
