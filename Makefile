# The two set-up commands of the README. Both create .venv if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   ?= runs/demo

.PHONY: demo test lint bench clean-demo

# requirements.txt (pinned, torch CPU build), then the project itself in editable mode: every
# process of this environment (Ray workers included) imports core/, data_pipeline/, models/, ...
# from this checkout, and the entry points of pyproject.toml are registered.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

test: $(VENV)/.installed
	$(PY) -X faulthandler -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

demo: $(VENV)/.installed
	DEMO=$(DEMO) PY=$(PY) bash demo.sh

clean-demo:
	rm -rf $(DEMO)
