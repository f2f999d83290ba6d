# Each target creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
# Runs launched by `make demo` and `make ui` share one Dagster instance, so the UI shows both.
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
INSTANCE = mkdir -p $(DAGSTER_HOME) && { test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/; }

.PHONY: demo test ui bench docs lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(INSTANCE)
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/prisonhealth refresh --landing data/sample --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

ui: $(STAMP)
	$(INSTANCE)
	DAGSTER_HOME=$(DAGSTER_HOME) PRISONHEALTH_LANDING=$${PRISONHEALTH_LANDING:-data/sample} PRISONHEALTH_OUT=$${PRISONHEALTH_OUT:-$(OUT)} \
		$(BIN)/dagster dev -m pipelines.definitions

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

docs: $(STAMP)
	$(BIN)/prisonhealth docs

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(OUT) .pytest_cache
