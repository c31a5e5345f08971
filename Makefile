# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The WHIP server the uplink's push tests push to: werift (npm), pinned by its lock file.
WHIP   := tests/support/werift_whip
WHIP_STAMP := $(WHIP)/node_modules/.installed

.PHONY: demo test lint typecheck pytest bench clean bytecode

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "edge needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Every process of the demo and the tests imports our modules; where the environment says
# PYTHONDONTWRITEBYTECODE (these machines do), each one compiled them all again at every
# start: a second of the demo's start-up on two cores (issue 17). Cheap when up to date.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q edge drivers ui

demo: $(STAMP) bytecode
	$(BIN)/edge demo --config config/demo.toml --sync

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers, each module on one of them (its module-scoped fixtures built once).
pytest: $(STAMP) $(WHIP_STAMP) bytecode
	$(BIN)/pytest -n 2 --dist loadscope

# werift declares node >= 22 but runs on Node 20 (npm's EBADENGINE warning is hushed).
# Without npm the WHIP push tests skip (and fail on CI, where .ci/run installs Node).
$(WHIP_STAMP): $(WHIP)/package.json $(WHIP)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(WHIP) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
	  echo "npm not found: the WHIP push tests will skip (install Node.js 20 or newer)"; \
	fi

bench: $(STAMP)
	$(BIN)/edge bench bus

clean:
	rm -rf $(VENV) build *.egg-info $(WHIP)/node_modules
