# Two commands on a fresh machine:  `make demo` (the main job)  and  `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml requirements/nodeps.txt scripts/setup.sh
	scripts/setup.sh $(VENV)

.PHONY: setup demo test test-all bench
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/msa predict assets/samples

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m "not gpu"
