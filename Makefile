# The two commands: `make report` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= quick

.PHONY: setup report test lab clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Train every registered method on the embedded brains and regenerate reports/.
report: $(STAMP)
	$(VENV)/bin/sr-lib report --profile $(PROFILE)

## Unit tests and every notebook under nbval (notebook defaults are the `test` profile).
test: $(STAMP)
	SR_LIB_REPORTS=.cache/test-reports $(PY) -m pytest -q --nbval-lax --nbval-current-env tests notebooks

## JupyterLab on the notebooks folder.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(VENV) .cache
