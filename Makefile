# The two set-up commands of the README. Both create .venv if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   ?= runs/demo

.PHONY: demo test lint bench clean-demo

# requirements.txt (pinned), then the project itself in editable mode: every process of this
# environment (Ray workers included) imports core/, data_pipeline/, models/, ... from this checkout,
# and the entry points of pyproject.toml are registered.
# torch goes first, through pip: pip takes the CPU wheel of the pinned version where one lies on disk
# (PIP_FIND_LINKS) and honours pip's own config. The rest goes through uv (pinned here), which
# installs and byte-compiles in parallel: 85 s for the whole environment against 186 s with pip alone
# on 2 cores (bench/RESULTS.md "Demo wall time"); torch is already satisfied, so uv fetches no torch.
# --system-certs: uv trusts the system's certificate store as pip does (a proxy's CA installed there).
TORCH := $(shell grep -m1 '^torch==' requirements.txt)
UV    := uv==0.13.9
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile "$(TORCH)" "$(UV)"
	$(VENV)/bin/uv pip install -q --system-certs --python $(PY) --compile-bytecode -r requirements.txt
	$(VENV)/bin/uv pip install -q --system-certs --python $(PY) --no-deps -e .
	touch $@

test: $(VENV)/.installed
	$(PY) -X faulthandler -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

demo: $(VENV)/.installed
	DEMO=$(DEMO) PY=$(PY) bash demo.sh

clean-demo:
	rm -rf $(DEMO)
