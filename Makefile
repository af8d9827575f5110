# make demo: set up, generate the demo data, train SimpleNet on demo_fakes (CPU), print the results.
# make test: set up and run the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo report test data clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

data: $(VENV)/.installed
	$(PY) demo_data.py --out data

demo: data
	$(PY) train_main.py -m SimpleNet -d demo_fakes -e 5 --device cpu --overwrite
	$(PY) report.py -m SimpleNet -d demo_fakes --device cpu

report: $(VENV)/.installed
	$(PY) report.py -m SimpleNet -d demo_fakes

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf .cache out checkpoints figures data
