# Two commands do all the set-up on a fresh machine:
#   make demo   builds a synthetic dataset and runs the whole pipeline on it (short schedules)
#   make test   runs the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/installed
	$(PY) demo.py

test: $(VENV)/installed
	$(PY) -m pytest -q

.PHONY: demo test
