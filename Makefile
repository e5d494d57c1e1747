# Two commands matter: `make demo` and `make test`. Both create .venv and install on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo
DEMO_PERSONS ?= 20000

.PHONY: install demo test test-fast lint bench java postgresql clean chromium screenshots docs docs-screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Spark needs a Java runtime; install one from the system's package manager when it is missing.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing a Java 17 runtime for Spark"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless) >/dev/null; }

# The review store's tests start a real PostgreSQL cluster (tests/postgres.py); install the server
# (and the sqlite3 shell the tamper tests use) from the system's package manager when missing.
postgresql:
	@{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 && command -v sqlite3 >/dev/null || { \
	  echo "installing PostgreSQL and the sqlite3 shell for the review store's tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql sqlite3) >/dev/null; }

# The reviewers' route through the MLflow UI (docs/guide/reviewers.md) is checked in headless
# Chromium (tests/ui/); install it from the system's package manager when missing (`make screenshots` also needs it).
chromium:
	@{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || { \
	  echo "installing Chromium for the MLflow UI route test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

# Re-take docs/img/mlflow_*.png: a small training, `mlflow ui`, every page docs/guide/reviewers.md names.
screenshots: $(STAMP) chromium
	$(BIN)/python tools/mlflow_ui_screenshots.py

# Re-take docs/img/docs_*.png (home, runbook, HTTP API) from a strict build; a CJK font so 通勤 renders.
docs-screenshots: $(STAMP) chromium
	@fc-list :lang=zh | grep -q . || { echo "installing a CJK font (fonts-wqy-microhei)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null; }
	$(BIN)/python tools/docs_screenshots.py

demo: $(STAMP)
	$(BIN)/python -m commuter_badge.cli.demo --persons $(DEMO_PERSONS) --dir $(DEMO)

# The full suite, CI's entry: a missing Java, PostgreSQL or sqlite3 shell fails it (tests/needs.py);
# the slowest tests' durations land in benchmarks/results/test_durations.json.
test: $(STAMP) java postgresql chromium lint
	COMMUTER_TESTS_REQUIRE_SERVERS=1 COMMUTER_TEST_DURATIONS=benchmarks/results/test_durations.json \
	  $(BIN)/python -m pytest -q --durations=25

# The edit loop: units, properties and the simulator's checks; no servers, no trained worlds, none of
# the tests marked slow (each > 10 s: the heaviest properties, the wheel install, the browser).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not service and not spark and not servers" tests/code tests/data

lint: $(STAMP)
	$(BIN)/python tools/import_tree.py build/import-tree
	cd build/import-tree && ../../$(BIN)/lint-imports --config ../../pyproject.toml
	$(BIN)/ruff check core features simulate models stores serving cli tests benchmarks tools
	$(BIN)/ruff format --check core features simulate models stores serving cli tests benchmarks tools

# The documentation site (mkdocs.yml): strict, so a broken link or anchor fails; the reference pages
# are generated from the code by tools/gen_docs.py during the build. Open site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/features_bench.py

clean:
	rm -rf $(VENV) $(DEMO) mlflow.db mlruns decisions.duckdb
