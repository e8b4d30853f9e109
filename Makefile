# The two commands: `make report` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= quick

.PHONY: setup report test lab clean

setup: $(STAMP)

# requirements.lock is the CPU lock (hashed; setuptools in it builds the package). On Linux its
# torch is the `+cpu` build, which is on the PyTorch CPU index, not on PyPI: the index is added
# only when pip cannot find that torch without it (a local wheel in pip's find-links does), as
# an index pip cannot reach costs retries for every package. CUDA: see requirements-cuda.lock.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CPU   := $(shell sed -n 's/^\(torch==[^ ;]*+cpu\).*/\1/p' requirements.lock)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11, 5))' || \
	  { echo "sr_lib's lock needs CPython 3.11.5 or newer: make PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if $(PY) -m pip install --quiet --dry-run --no-deps "$(TORCH_CPU)" >/dev/null 2>&1; \
	then $(PY) -m pip install --quiet -r requirements.lock; \
	else $(PY) -m pip install --quiet -r requirements.lock --extra-index-url $(TORCH_INDEX); fi
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
