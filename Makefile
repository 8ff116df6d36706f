# make demo | make test | make lint | make bench — each sets up .venv itself on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv demo lint test bench clean

$(VENV)/.installed: setup.cfg setup.py pyproject.toml $(wildcard tango_receiver/*.c tango_receiver/codecs/*.[ch])
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/tango-receiver demo

lint: venv
	$(VENV)/bin/ruff check tango_receiver tests
	$(VENV)/bin/ruff format --check tango_receiver tests
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/tango-receiver bench

clean:
	rm -rf $(VENV) demo-data .pytest_cache
