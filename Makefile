# The two commands a fresh clone needs: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs first; torch is pinned through
# constraints.txt so the CPU wheel on these machines is used, not gigabytes of CUDA.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[cluster,llm,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/policyctl demo

lint: $(STAMP)
	$(BIN)/ruff check policyctl tests bench
	$(BIN)/mypy policyctl

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
