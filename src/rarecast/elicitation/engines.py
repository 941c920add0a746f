"""Execution engines: where the scoring loop's chunks of queries are measured.

An engine answers two questions for :func:`rarecast.elicitation.scoring.score`: under which store key a
behavior's results belong (:meth:`Engine.run_key`, which needs the model's identity), and the outcomes of a
round of tasks (:meth:`Engine.measure`, yielding ``(results, failures)`` per chunk in any order). Every engine
measures a chunk with :func:`measure_chunk`, so one failing query becomes one failure, never a lost chunk.

:class:`LocalEngine` measures in this process; :class:`rarecast.elicitation.ray_engine.RayEngine` on Ray actors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rarecast.elicitation.behaviors import Outcome, run_key
from rarecast.elicitation.failures import failure_reason
from rarecast.queries import Query
from rarecast.store import RunKey

if TYPE_CHECKING:
    from rarecast.backends.base import Backend

#: ``(query_id, outcome)`` pairs measured, and ``(query_id, reason)`` pairs that failed
Measured = tuple[list[tuple[str, Outcome]], list[tuple[str, str]]]


@dataclass(frozen=True)
class Task:
    """Queries to measure with one behavior (a policy's round can hold several, e.g. different sample counts)."""

    behavior: Any
    queries: list[Query]


@runtime_checkable
class Engine(Protocol):
    """Measures tasks; see the module docstring."""

    def run_key(self, behavior: Any) -> RunKey: ...

    def measure(self, tasks: Sequence[Task], chunk_size: int) -> Iterator[Measured]: ...

    @property
    def tokens_processed(self) -> int | None: ...


class LocalEngine:
    """Measures chunks in this process with one backend (its ``batch_tokens`` set when given)."""

    def __init__(self, backend: Backend, batch_tokens: int | None = None) -> None:
        if batch_tokens is not None and hasattr(backend, "batch_tokens"):
            backend.batch_tokens = int(batch_tokens)
        self.backend = backend

    def run_key(self, behavior: Any) -> RunKey:
        return run_key(self.backend, behavior)

    def measure(self, tasks: Sequence[Task], chunk_size: int) -> Iterator[Measured]:
        for task in tasks:
            for i in range(0, len(task.queries), chunk_size):
                yield measure_chunk(task.queries[i : i + chunk_size], self.backend, task.behavior)

    @property
    def tokens_processed(self) -> int | None:
        return getattr(self.backend, "tokens_processed", None)


def measure_chunk(chunk: list[Query], backend: Backend, behavior: Any) -> Measured:
    """``(results, failures)`` of one chunk; a failing chunk is retried query by query to isolate the cause."""
    try:
        return _checked(chunk, behavior.measure(chunk, backend))
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:
        if len(chunk) == 1:
            return [], [(chunk[0].id, failure_reason(exc))]
    ok: list[tuple[str, Outcome]] = []
    bad: list[tuple[str, str]] = []
    for q in chunk:
        try:
            good, failed = _checked([q], behavior.measure([q], backend))
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:  # recorded per query; never turned into a probability
            good, failed = [], [(q.id, failure_reason(exc))]
        ok += good
        bad += failed
    return ok, bad


def _checked(chunk: list[Query], outcomes: Sequence[Outcome]) -> Measured:
    """Pair outcomes with ids; a NaN or positive log p is a failure of that query, not a stored value."""
    ok, bad = [], []
    for q, o in zip(chunk, outcomes, strict=True):
        if o.logp is not None and (math.isnan(o.logp) or o.logp > 0):
            bad.append((q.id, f"backend returned log p = {o.logp}"))
        else:
            ok.append((q.id, o))
    return ok, bad
