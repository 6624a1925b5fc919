# make run   - create .venv if missing, install, run the embedded default trial (digits + NAdamW)
# make test  - create .venv if missing, install, run the default (fast, CPU) test suite
# make lint  - ruff check and format check
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m algoperf_torch overwrite=true $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -m "" $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check algoperf_torch hydra_plugins tests benchmarks
	$(VENV)/bin/ruff format --check algoperf_torch hydra_plugins tests benchmarks

clean-venv:
	rm -rf $(VENV)
