"""Shared pytest fixtures. Each owner keeps their fixtures in a clearly named block."""

from __future__ import annotations

import pytest

# ==========================================================================================================
# Elicitation layer (hf backend, behaviors, store, scoring): the embedded model, loaded once per session.
# ==========================================================================================================


@pytest.fixture(scope="session")
def smollm2_backend():
    """The real embedded SmolLM2-135M-Instruct through the hf backend, fp32 on CPU (loaded once)."""
    from rarecast.backends import get_backend

    return get_backend("hf:smollm2", device="cpu")


# ==========================================================================================================
