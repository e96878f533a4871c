# Two promises: `make demo` (set up + run the three zones) and `make test` (set up + pass the tests).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Debian: apt-get install python3 python3-venv)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)
	@# minisign is the independent verifier of the detached bundle signature (Debian package).
	@command -v minisign >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get install -y -q minisign >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q minisign >/dev/null)) || echo "note: minisign not installed (apt-get install minisign); its test will be skipped"; }

demo: setup
	$(BIN)/gapsync demo --workdir demo-run

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache
