"""Shared HTTP plumbing for the remote-model backends (OpenAI-compatible servers, Anthropic).

One :class:`HttpClient` gives every backend the same behavior: connect and read timeouts, bounded retries with
exponential backoff and full jitter on 429 (honoring ``Retry-After``), 5xx, connection resets and timeouts,
a cap on requests in flight, and an API key that never appears in a repr, a log line or an error message.

Failures come in two kinds, so that a scoring loop can keep going where that makes sense:

* :class:`QueryError`: one query could not be answered (a 4xx, 5xx/429 after the last retry, a body that is not
  JSON, log-probs missing from the reply). The other queries of the batch are still served; the backend then
  raises :class:`PartialResults`, which carries both the results and the per-query errors.
* :class:`ServerError`: no query can be answered (the server is unreachable or times out after every retry,
  rejects the key, or does not know the endpoint or model). The batch stops at once.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from rarecast.errors import RarecastError

T = TypeVar("T")

# Statuses that say "try again later" rather than "this request is wrong". 529 is Anthropic's "overloaded".
_RETRY_STATUSES = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
# Statuses that no other query of the batch can get past either.
_FATAL_STATUSES = frozenset({401, 403, 404, 405})


class BackendError(RarecastError):
    """A remote model backend could not deliver what was asked."""


class ServerError(BackendError):
    """The server cannot answer any query (unreachable, timing out, rejecting the key, unknown model)."""


class QueryError(BackendError):
    """One query failed; the rest of its batch may still have results.

    ``query_id`` is filled in by the backend, ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, *, query_id: str | None = None, status: int | None = None):
        self.message = message
        self.query_id = query_id
        self.status = status
        prefix = f"query {query_id}: " if query_id is not None else ""
        super().__init__(prefix + message)

    def for_query(self, query_id: str) -> QueryError:
        """The same error, naming the query it belongs to."""
        return QueryError(self.message, query_id=query_id, status=self.status)


class PartialResults(BackendError):
    """Some queries of a batch failed; ``results`` holds what the others returned.

    ``results`` has the shape the backend method returns, with NaN rows (log-probs) or ``None`` entries
    (samples) where a query failed; ``errors`` maps the index of each failed query to its :class:`QueryError`.
    Never treat a NaN row as a probability: record the query as failed.
    """

    def __init__(self, results: Any, errors: Mapping[int, QueryError]):
        self.results = results
        self.errors = dict(errors)
        first = next(iter(self.errors.values()))
        super().__init__(f"{len(self.errors)} of {len(results)} queries failed; first: {first}")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed in a way that may pass.

    Attempt ``i`` (0-based) that failed waits a uniform random time in ``[0, min(max_delay_s, base_delay_s *
    2**i)]`` (full jitter, so that many clients do not retry in lockstep), or the server's ``Retry-After``
    plus a little jitter when it sent one. A ``Retry-After`` above ``max_retry_after_s`` is not waited for.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt``."""
        if retry_after_s is not None:
            return retry_after_s + rng.uniform(0.0, self.base_delay_s)
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2.0**attempt))


def api_key_from_env(var: str) -> str | None:
    """The API key held in environment variable ``var``, or ``None`` when it is unset or empty."""
    value = os.environ.get(var, "").strip()
    return value or None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date. ``None`` if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """A JSON-over-HTTP client with timeouts, bounded retries and a cap on requests in flight.

    ``secret`` is the API key (or ``None``); it is sent only through ``headers`` and redacted from every
    message this client produces. After a request found the server unreachable, requests for the next
    ``unreachable_cooldown_s`` seconds try once instead of retrying, until one gets an answer. The client is
    safe to share between threads.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        max_in_flight: int = 8,
        unreachable_cooldown_s: float = 60.0,
    ):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.max_in_flight = max_in_flight
        self._secret = secret
        self.unreachable_cooldown_s = unreachable_cooldown_s
        self._unreachable_until = 0.0
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self._client = httpx.Client(
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
        )

    def __repr__(self) -> str:
        return f"HttpClient({self.base_url!r}, max_in_flight={self.max_in_flight})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced, for anything that may be shown or logged."""
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return text

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the base URL unless it is absolute)."""
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def post_json(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``payload`` as JSON and return the decoded JSON object, retrying what may pass.

        Raises :class:`ServerError` when the server cannot be reached or refuses every request, and
        :class:`QueryError` when this request alone failed.
        """
        url = self.url(path)
        attempt = 0
        while True:
            last = attempt >= self._attempt_limit() - 1
            try:
                response = self._client.post(url, json=payload)
            except httpx.TransportError as exc:
                # Refused connections, resets and timeouts: the server, not the query, is at fault.
                if last:
                    self._unreachable_until = time.monotonic() + self.unreachable_cooldown_s
                    raise ServerError(
                        f"could not reach {url} after {attempt + 1} attempt(s) "
                        f"({type(exc).__name__}: {self.redact(str(exc)) or 'no detail'}); is the server running?"
                    ) from None
                self._wait(attempt, None)
                attempt += 1
                continue
            self._unreachable_until = 0.0
            if response.status_code < 400:
                return self._decode(response, url)
            self._raise_unless_retryable(response, url, last)
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None and retry_after > self.retry.max_retry_after_s:
                raise QueryError(
                    f"{url} answered {response.status_code} and asked to wait {retry_after:.0f} s, more than "
                    f"the {self.retry.max_retry_after_s:.0f} s this client waits",
                    status=response.status_code,
                )
            self._wait(attempt, retry_after)
            attempt += 1

    def _attempt_limit(self) -> int:
        # Once the server was found unreachable, each request makes a single probe until one gets an answer,
        # so a caller that goes on query by query after a dead server fails fast instead of retrying each.
        return 1 if time.monotonic() < self._unreachable_until else self.retry.max_attempts

    def map(self, tasks: Sequence[Callable[[], T]]) -> list[T | QueryError]:
        """Run ``tasks`` with at most ``max_in_flight`` at once; each slot holds its result or QueryError.

        A :class:`ServerError` from any task cancels the tasks not yet started and is raised.
        """
        if not tasks:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_in_flight, len(tasks))) as pool:
            futures = [pool.submit(_capture_query_error, task) for task in tasks]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                for future in pending:
                    future.cancel()
                raise failed[0].exception()  # type: ignore[misc]
        return [f.result() for f in futures]

    def _wait(self, attempt: int, retry_after_s: float | None) -> None:
        with self._rng_lock:  # random.Random is not documented as thread-safe
            delay = self.retry.delay(attempt, retry_after_s, self._rng)
        time.sleep(delay)

    def _decode(self, response: httpx.Response, url: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise QueryError(
                f"{url} answered {response.status_code} with a body that is not JSON: "
                f"{self.redact(response.text[:200])!r}",
                status=response.status_code,
            ) from None
        if not isinstance(body, dict):
            raise QueryError(f"{url} answered with JSON that is not an object", status=response.status_code)
        return body

    def _raise_unless_retryable(self, response: httpx.Response, url: str, last: bool) -> None:
        status = response.status_code
        detail = self.redact(_error_detail(response))
        if status in _FATAL_STATUSES:
            hint = " (check the API key variable)" if status in (401, 403) else " (check the URL and model name)"
            raise ServerError(f"{url} answered {status}: {detail}{hint}")
        if status not in _RETRY_STATUSES:
            raise QueryError(f"{url} answered {status}: {detail}", status=status)
        if last:
            raise QueryError(
                f"{url} answered {status} on all {self.retry.max_attempts} attempts: {detail}", status=status
            )


def _error_detail(response: httpx.Response) -> str:
    """The server's own error message when its body has one (OpenAI and Anthropic shapes), else the text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:300]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"][:300]
    return json.dumps(body)[:200]


def _capture_query_error(task: Callable[[], T]) -> T | QueryError:
    try:
        return task()
    except QueryError as exc:
        return exc
