"""Scoring a query set: backend x behavior -> store, resumable and chunked.

:func:`score` skips queries the store already holds for this (model, revision, behavior, settings), measures
the rest in chunks, and commits each chunk in one transaction, so a killed run loses at most the chunk in
flight and a rerun picks up where it stopped. A chunk that raises is retried one query at a time, so one bad
query becomes one row in the ``failures`` table instead of stopping the run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

from rarecast.backends.base import Backend
from rarecast.queries import Query
from rarecast.store import RunKey, Store, run_key


@dataclass(frozen=True)
class ScoreSummary:
    """What one :func:`score` call did."""

    total: int
    skipped: int
    scored: int
    failed: int
    seconds: float
    tokens: int | None

    @property
    def queries_per_s(self) -> float:
        """Queries measured per second of this call (skipped ones excluded)."""
        return (self.scored + self.failed) / self.seconds if self.seconds > 0 else math.nan

    @property
    def tokens_per_s(self) -> float | None:
        """Model tokens processed per second, when the backend counts them."""
        if self.tokens is None or self.seconds <= 0:
            return None
        return self.tokens / self.seconds


def default_chunk_size(behavior) -> int:
    """Queries per commit: enough to fill the backend's batches, few enough that a kill loses little work.

    For exact behaviors, 256 queries scored 10-12% faster than 64 with the hf backend on a CPU (fewer part-full
    batches, more queries per shared-prefix set) and lose at most ~15 s of CPU work to a kill.
    """
    return 8 if behavior.kind == "sampled" else 256


def score(
    queries: Sequence[Query],
    backend: Backend,
    behavior,
    store: Store,
    *,
    batch_tokens: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> ScoreSummary:
    """Measure ``behavior`` on every query not yet in ``store``, committing each chunk atomically.

    ``batch_tokens`` sets the backend's token budget per forward pass where it has one (hf). Returns a
    :class:`ScoreSummary`; with ``progress`` a rich progress bar (queries/s, tokens/s, ETA) and a summary
    table are printed to stderr.
    """
    if batch_tokens is not None and hasattr(backend, "batch_tokens"):
        backend.batch_tokens = int(batch_tokens)
    key = run_key(backend, behavior)
    by_id = {q.id: q for q in queries}
    todo = [by_id[i] for i in store.pending([q.id for q in queries], key)]
    size = chunk_size or default_chunk_size(behavior)
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    tokens0 = getattr(backend, "tokens_processed", None)
    start = time.perf_counter()
    reporter = Progress(len(queries), len(queries) - len(todo), backend, enabled=progress)
    scored = failed = 0
    with reporter:
        for chunk in chunks:
            ok, bad = measure_chunk(chunk, backend, behavior)
            store.write(key, ok, bad)
            scored, failed = scored + len(ok), failed + len(bad)
            reporter.advance(len(chunk))
    tokens1 = getattr(backend, "tokens_processed", None)
    summary = ScoreSummary(
        total=len(queries), skipped=len(queries) - len(todo), scored=scored, failed=failed,
        seconds=time.perf_counter() - start,
        tokens=None if tokens0 is None or tokens1 is None else int(tokens1 - tokens0),
    )
    if progress:
        print_summary(summary, key, store)
    return summary


def measure_chunk(chunk: list[Query], backend, behavior):
    """``(results, failures)`` of one chunk; a failing chunk is retried query by query to isolate the cause."""
    try:
        return _checked(chunk, behavior.measure(chunk, backend))
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:
        if len(chunk) == 1:
            return [], [(chunk[0].id, f"{type(exc).__name__}: {exc}")]
    ok, bad = [], []
    for q in chunk:
        try:
            good, failed = _checked([q], behavior.measure([q], backend))
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:  # recorded per query; never turned into a probability
            good, failed = [], [(q.id, f"{type(exc).__name__}: {exc}")]
        ok += good
        bad += failed
    return ok, bad


def _checked(chunk: list[Query], outcomes):
    """Pair outcomes with ids; a NaN or positive log p is a failure of that query, not a stored value."""
    ok, bad = [], []
    for q, o in zip(chunk, outcomes, strict=True):
        if o.logp is not None and (math.isnan(o.logp) or o.logp > 0):
            bad.append((q.id, f"backend returned log p = {o.logp}"))
        else:
            ok.append((q.id, o))
    return ok, bad


class Progress:
    """A rich progress bar with queries/s, tokens/s and ETA; a no-op when disabled."""

    def __init__(self, total: int, done: int, backend, enabled: bool):
        self.enabled = enabled and total > done
        self.backend = backend
        self.start = time.perf_counter()
        self.tokens0 = getattr(backend, "tokens_processed", None)
        self.measured = 0
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )
            self.task = self.bar.add_task("score", total=total, completed=done, rate="")

    def __enter__(self):
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()

    def advance(self, n: int) -> None:
        self.measured += n
        if not self.enabled:
            return
        dt = max(time.perf_counter() - self.start, 1e-9)
        rate = f"{self.measured / dt:.1f} q/s"
        tokens = getattr(self.backend, "tokens_processed", None)
        if tokens is not None and self.tokens0 is not None:
            rate += f"  {(tokens - self.tokens0) / dt:,.0f} tok/s"
        self.bar.update(self.task, advance=n, rate=rate)


def print_summary(summary: ScoreSummary, key: RunKey, store: Store) -> None:
    """A short table on stderr: what was scored, skipped and failed, and how fast."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rarecast score: {key.behavior_name} on {key.model}", show_header=False)
    table.add_row("store", str(store.path))
    table.add_row("queries", f"{summary.total} ({summary.skipped} already done)")
    table.add_row("scored / failed", f"{summary.scored} / {summary.failed}")
    rate = f"{summary.seconds:.1f} s, {summary.queries_per_s:.2f} queries/s"
    if summary.tokens_per_s is not None:
        rate += f", {summary.tokens_per_s:,.0f} tokens/s"
    table.add_row("time", rate)
    Console(stderr=True).print(table)


__all__ = ["Progress", "ScoreSummary", "measure_chunk", "score", "run_key"]
