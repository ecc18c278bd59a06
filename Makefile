# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs
# what it needs (Python >= 3.10 with venv is the only prerequisite; PostgreSQL binaries for the
# PostgreSQL tests are installed by .ci/run, or by your package manager).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A second virtualenv with the oldest supported Airflow (constraints/airflow-oldest.in), its
# dependencies pinned as of its release (constraints/airflow-oldest.txt).
OLDEST_VENV ?= .venv-oldest
OLDEST_BIN := $(OLDEST_VENV)/bin
OLDEST_STAMP := $(OLDEST_VENV)/.installed
# The day after the oldest Airflow's release: the newest dependency versions it was used with.
OLDEST_EXCLUDE_NEWER ?= 2025-04-25
# The suite runs on TEST_WORKERS pytest-xdist processes. --dist loadgroup keeps each end-to-end
# deployment's scenarios together, in order, on one worker (tests/e2e/conftest.py) while the other
# deployment and the unit tests run beside it. 3 on a 2-core machine: while the deployments run,
# each holds its worker (mostly waiting for Airflow), so with 2 the unit tests would wait for them.
# `make test TEST_WORKERS=0` runs it in one process (as plain `pytest` does).
TEST_WORKERS ?= 3
PYTEST_XDIST := -n $(TEST_WORKERS) --dist loadgroup

.PHONY: demo test test-oldest constraints-oldest screenshots lint typecheck bench bench-scale bench-plot bench-plot-before bench-triggers bench-cli docs docs-serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

$(OLDEST_STAMP): pyproject.toml constraints/airflow-oldest.in constraints/airflow-oldest.txt
	test -x $(OLDEST_BIN)/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(OLDEST_BIN)/uv pip install --quiet --python $(OLDEST_BIN)/python -e '.[test]' \
		-r constraints/airflow-oldest.in -c constraints/airflow-oldest.txt
	touch $(OLDEST_STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_XDIST)

# The suite on the oldest supported Airflow. Tests marked `airflow_min` (newer Airflow features,
# and the end-to-end suite, which runs on 3.3) are skipped there with their reason in the summary.
test-oldest: $(OLDEST_STAMP)
	$(OLDEST_BIN)/python -m pytest $(PYTEST_XDIST)

constraints-oldest: $(STAMP)
	$(BIN)/uv pip compile --quiet --universal --python-version 3.10 --exclude-newer $(OLDEST_EXCLUDE_NEWER) \
		pyproject.toml constraints/airflow-oldest.in --extra test -o constraints/airflow-oldest.txt

# docs/images/ui-*.png: the Watermarks page, as the browser test (tests/plugin/test_browser.py, a
# real api-server and headless Chromium) sees it. The api-server inherits STATEFUL_MAX_LAG, so a
# watermark more than 2.5 hours behind is shown stuck.
screenshots: $(STAMP)
	STATEFUL_SCREENSHOTS=docs/images STATEFUL_MAX_LAG=9000 $(BIN)/python -m pytest tests/plugin/test_browser.py -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# docs/figures/scale.png: the event loop's time per event against the size of seen, before and
# after. `make bench-plot` measures this checkout (docs/figures/scale-after.csv, ~10 minutes) and
# redraws the plot; `make bench-plot-before` re-measures the release before the scaling work
# (SCALE_BEFORE, in a temporary git worktree) into docs/figures/scale-before.csv. That release
# serialises the whole state per event, so it runs fewer events at large sizes (--max-work).
SCALE_BEFORE ?= 756ae15
PLOT_SIZES ?= 100,1000,10000,100000
PLOT_SCALE := bench/scale.py --sizes $(PLOT_SIZES) --repeats 1

bench-plot: $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev,bench]'
	$(BIN)/python $(PLOT_SCALE) --warmup 100 --events 200 --csv docs/figures/scale-after.csv
	$(BIN)/python bench/plot_scale.py --before docs/figures/scale-before.csv \
		--after docs/figures/scale-after.csv --out docs/figures/scale.png

bench-plot-before: $(STAMP)
	tree=$$(mktemp -d) && git worktree add --quiet --detach $$tree/src $(SCALE_BEFORE) && \
	PYTHONPATH=$$tree/src $(BIN)/python $(PLOT_SCALE) --warmup 0 --events 100 --max-work 1000000 \
		--csv docs/figures/scale-before.csv; \
	status=$$?; git worktree remove --force $$tree/src; rm -rf $$tree; exit $$status

# 1,000 decorated triggers in one event loop on one SQLite store, with and without group commit.
bench-triggers: $(STAMP)
	$(BIN)/python bench/many_triggers.py

# How long each `stateful` command takes from start to exit, against `python -c pass`
# (docs/performance.md, "Command-line start-up").
bench-cli: $(STAMP)
	$(BIN)/python bench/cli_startup.py

# The documentation site (mkdocs.yml, docs/): `make docs` builds it into site/ with --strict (a
# broken link, anchor or cross-reference fails the build); `make docs-serve` serves it on
# localhost:8000, rebuilt on every change, for writers (warnings are printed, not fatal). Both
# install the `docs` extra (MkDocs Material, mkdocstrings) into .venv.
DOCS_STAMP := $(VENV)/.installed-docs
# Material for MkDocs prints a banner about its successor on every build; not a warning of ours.
export NO_MKDOCS_2_WARNING := 1

$(DOCS_STAMP): $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	$(BIN)/mkdocs serve

clean:
	rm -rf site $(VENV) $(OLDEST_VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
