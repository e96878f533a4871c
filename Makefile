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
	@# The scanner's benign PyTorch test needs torch; install it only from a CPU wheel already on
	@# this disk (never a multi-GB download); without it that one test is skipped.
	@w="$(firstword $(wildcard /opt/wheels/torch-2.13.0*cp311*.whl))"; [ -z "$$w" ] || $(BIN)/pip install -q "$$w"
	@touch $(STAMP)

# Debian tools the tests and the demo use as real parts: minisign (checks the detached signature),
# docker-registry (the CNCF distribution server), skopeo and umoci (OCI clients), htpasswd.
DEB_TOOLS := minisign:minisign docker-registry:docker-registry skopeo:skopeo umoci:umoci htpasswd:apache2-utils podman:podman

# compileall: the bytecode of gapsync's own modules, as a non-editable install has it (with
# PYTHONDONTWRITEBYTECODE set, an editable install would compile them again in every process)
setup: $(STAMP)
	@$(BIN)/python -m compileall -q gapsync >/dev/null
	@need=""; for t in $(DEB_TOOLS); do command -v $${t%%:*} >/dev/null || need="$$need $${t##*:}"; done; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -q $$need >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$need >/dev/null)); \
	  else echo "note: not root, so not installing$$need (apt-get install$$need); the tests that need them are skipped"; fi; \
	fi

demo: setup
	$(BIN)/gapsync demo --workdir demo-run

# lint-imports: the import contracts and mypy: the type check, both configured in pyproject.toml
test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .import_linter_cache .grimp_cache
