"""Anthropic Messages API backend, for sampling only.

Model string: ``anthropic:<model>``, e.g. ``anthropic:claude-sonnet-4-5``. The key is read from
``ANTHROPIC_API_KEY`` (or the variable named by ``api_key_env``); the base URL from the ``base_url`` option,
else ``ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com``. The API returns no log-probabilities, so
:meth:`AnthropicBackend.continuation_logprobs` raises; use a ``sampled`` behavior with this backend.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rarecast.backends.base import SamplingSettings
from rarecast.backends.http import (
    BackendError,
    HttpClient,
    PartialResults,
    QueryError,
    RetryPolicy,
    api_key_from_env,
)

if TYPE_CHECKING:  # backends take queries but never build them, so queries may import backends
    from rarecast.queries import Query

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


def make_backend(spec: str, **opts: Any) -> AnthropicBackend:
    """Build an :class:`AnthropicBackend` from ``anthropic:<model>``; ``opts`` are its keyword options."""
    model = spec[len("anthropic:") :] if spec.startswith("anthropic:") else spec
    if not model:
        raise BackendError(f"model string {spec!r} names no model; expected anthropic:<model>")
    return AnthropicBackend(model, **opts)


class AnthropicBackend:
    """A Claude model behind the Anthropic Messages API (or a server speaking it at ``base_url``).

    Options: ``base_url``, ``api_key_env`` (default ``ANTHROPIC_API_KEY``; the key comes from the environment
    only), ``max_in_flight``, ``timeout_s``, ``connect_timeout_s``, ``retry`` (a :class:`RetryPolicy`),
    ``revision`` (recorded with results; the API does not report one).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "ANTHROPIC_API_KEY",
        max_in_flight: int = 4,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        revision: str = "unpinned",
        **unknown: Any,
    ):
        if "api_key" in unknown:
            raise BackendError(
                "pass the API key through an environment variable (api_key_env=<NAME>), not as an option"
            )
        if unknown:
            raise BackendError(f"unknown option(s) for the Anthropic backend: {sorted(unknown)}")
        self.model = model
        self.model_id = f"anthropic:{model}"
        self.revision = revision
        key = api_key_from_env(api_key_env)
        if key is None:
            raise BackendError(f"the Anthropic backend needs an API key in the environment variable {api_key_env}")
        headers = {"x-api-key": key, "anthropic-version": API_VERSION}
        url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        self.client = HttpClient(
            url,
            headers=headers,
            secret=key,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retry=retry,
            max_in_flight=max_in_flight,
        )

    def __repr__(self) -> str:
        return f"AnthropicBackend({self.model_id!r}, base_url={self.client.base_url!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def continuation_logprobs(
        self, queries: Sequence[Query], continuations: Sequence[str], *, temperature: float = 1.0
    ) -> np.ndarray:
        """Always raises: the Messages API returns no log-probabilities."""
        raise BackendError(
            f"{self.model_id} cannot score continuations exactly: the Anthropic API returns no log-probabilities. "
            "Use a 'sampled' behavior (k samples per query and a grader) with this model."
        )

    def sample(self, queries: Sequence[Query], k: int, settings: SamplingSettings) -> list[list[str]]:
        """``k`` replies per query, one request each (the API has no ``n``).

        The API has no seed, so a set ``settings.seed`` is ignored with a warning. Raises
        :class:`~rarecast.backends.http.PartialResults` (failed queries are ``None``) when some queries failed,
        :class:`~rarecast.backends.http.ServerError` when none can be served.
        """
        if settings.seed is not None:
            warnings.warn("the Anthropic API takes no seed; samples are not reproducible", stacklevel=2)
        jobs = [(qi, j) for qi in range(len(queries)) for j in range(k)]
        tasks = [(lambda qi=qi: self._sample_one(queries[qi], settings)) for qi, _ in jobs]
        outcomes = self.client.map(tasks)
        replies: list[list[str] | None] = [[] for _ in queries]
        errors: dict[int, QueryError] = {}
        for (qi, _), outcome in zip(jobs, outcomes):
            if isinstance(outcome, QueryError):
                errors.setdefault(qi, outcome.for_query(queries[qi].id))
                replies[qi] = None
            elif (got := replies[qi]) is not None:
                got.append(outcome)
        if errors:
            raise PartialResults(replies, errors)
        return replies  # type: ignore[return-value]

    def _sample_one(self, query: Query, settings: SamplingSettings) -> str:
        payload = request_body(self.model, query, settings)
        return reply_text(self.client.post_json("v1/messages", payload))


def request_body(model: str, query: Query, settings: SamplingSettings) -> dict[str, Any]:
    """The Messages API body for one sample: system messages go to ``system``, a plain prompt becomes a user turn."""
    if query.prompt is not None:
        messages: list[dict[str, str]] = [{"role": "user", "content": query.prompt}]
        system: list[str] = []
    else:
        chat = list(query.messages or ())
        system = [m["content"] for m in chat if m.get("role") == "system"]
        messages = [{"role": m["role"], "content": m["content"]} for m in chat if m.get("role") != "system"]
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": settings.max_tokens,
        "messages": messages,
        "temperature": settings.temperature,
    }
    # Recent models reject temperature and top_p together; send top_p only when it changes anything.
    if settings.top_p < 1.0:
        body["top_p"] = settings.top_p
    if system:
        body["system"] = "\n\n".join(system)
    return body


def reply_text(body: Mapping[str, Any]) -> str:
    """The text of a Messages API reply (its text blocks joined); a clear QueryError when there is none."""
    content = body.get("content")
    if not isinstance(content, list):
        raise QueryError("the Messages API reply has no 'content' list")
    texts = [b.get("text") for b in content if isinstance(b, Mapping) and b.get("type") == "text"]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise QueryError("the Messages API reply carries no text block")
    return "".join(texts)  # type: ignore[arg-type]
