"""The interface every model backend implements.

A backend turns queries into either exact log-probabilities of given reply continuations (teacher forcing)
or sampled replies. Backends are chosen by a model string such as ``hf:smollm2`` or
``openai:http://127.0.0.1:8080/v1/my-model`` through the registry in :mod:`rarecast.backends`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # backends take queries but never build them, so queries may import backends
    from rarecast.queries import Query


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings recorded with every sampled result."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 64
    seed: int | None = None


@runtime_checkable
class Backend(Protocol):
    """A language model that rarecast can score or sample."""

    model_id: str
    revision: str

    def continuation_logprobs(
        self, queries: Sequence[Query], continuations: Sequence[str], *, temperature: float = 1.0
    ) -> np.ndarray:
        """Natural-log probability that the assistant reply to each query starts with each continuation.

        The query is rendered with the model's chat template and its generation prompt; the continuation is
        teacher-forced after it. Returns an array of shape ``(len(queries), len(continuations))``.
        """
        ...

    def sample(self, queries: Sequence[Query], k: int, settings: SamplingSettings) -> list[list[str]]:
        """``k`` sampled replies per query under ``settings``."""
        ...
