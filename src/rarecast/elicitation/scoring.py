"""Scoring a query set: backend x behavior -> store, resumable and chunked.

:func:`score` skips queries the store already holds for this (model, revision, behavior, settings), measures
the rest in chunks, and commits each chunk in one transaction, so a killed run loses at most the chunk in
flight and a rerun picks up where it stopped. A chunk that raises is retried one query at a time, so one bad
query becomes one row in the ``failures`` table instead of stopping the run.

The failure rule lives here for every engine and policy (this loop, ``ray_engine.score_ray`` and
``adaptive.score_adaptive``): each counts its failed queries in a :class:`FailureTally`, reports them in its
:class:`ScoreSummary` (the failure line names the most common reason and its count) and ends with
:func:`check_failures`, which raises :class:`~rarecast.errors.RunFailed` when more queries failed than the
run's :class:`FailureLimit` allows. By default a run fails only when every one of its queries failed.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rarecast.backends.base import Backend
from rarecast.backends.http import PartialResults
from rarecast.elicitation.behaviors import run_key
from rarecast.errors import InputError, RunFailed
from rarecast.queries import Query
from rarecast.store import RunKey, Store


@dataclass(frozen=True)
class FailureLimit:
    """How many of a run's queries may fail before the run itself fails: at most ``count`` queries, or at most
    ``fraction`` of them; with neither (the default) the run fails only when every query failed.

    The default keeps a run that scored something usable (a forecast needs the scored queries, not all of
    them) while a run that scored nothing, such as one against a server that is down, fails loudly. Counts and
    fractions are of the run's whole query set, queries already stored by an earlier run counting as scored,
    so a rerun that retries a few failed queries is judged like the first run.
    """

    count: int | None = None
    fraction: float | None = None

    def __post_init__(self):
        if self.count is not None and self.fraction is not None:
            raise InputError("a failure limit is a count or a fraction, not both")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0
        ):
            raise InputError(f"max failures must be a count >= 0, got {self.count!r}")
        if self.fraction is not None and not 0 <= self.fraction <= 1:
            raise InputError(f"max failures as a fraction must lie in [0, 1], got {self.fraction!r}")

    @classmethod
    def parse(cls, value: FailureLimit | int | float | str | None, name: str = "max_failures") -> FailureLimit:
        """A limit from a count (``5``, ``"5"``), a fraction (``0.1``, ``"0.1"``) or ``None`` (the default).

        Whole numbers written without a decimal point are counts; numbers with one are fractions in [0, 1].
        ``name`` is what errors call the setting (the CLI passes ``--max-failures``).
        """
        if value is None or isinstance(value, FailureLimit):
            return value or cls()
        text = str(value).strip()
        if isinstance(value, bool) or not re.fullmatch(r"\d+|\d*\.\d+", text):
            raise InputError(f"{name} must be a count (5) or a fraction of the queries (0.1), got {value!r}")
        if not text.isdigit() and float(text) > 1:
            raise InputError(f"{name} as a fraction must lie in [0, 1], got {value!r}; a count has no decimal point")
        return cls(count=int(text)) if text.isdigit() else cls(fraction=float(text))

    def exceeded(self, failed: int, total: int) -> bool:
        """Whether ``failed`` of ``total`` queries is more than this limit allows."""
        if failed == 0:
            return False
        if self.count is not None:
            return failed > self.count
        if self.fraction is not None:
            return failed > self.fraction * total
        return failed >= total

    def describe(self) -> str | None:
        """The limit in words, for the error that reports it (``None`` for the default: "n of n failed" says it)."""
        if self.count is not None:
            return f"more than the {self.count} allowed"
        if self.fraction is not None:
            return f"more than the {self.fraction * 100:g}% allowed"
        return None


class FailureTally:
    """Failed queries of one run and why: what every engine counts, so that all report alike."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}  # query id -> its latest reason

    def add(self, failures: Iterable[tuple[str, str]]) -> None:
        """Record ``(query_id, reason)`` pairs; a query that fails twice counts once, with its last reason."""
        for qid, reason in failures:
            self.reasons[str(qid)] = " ".join(str(reason).split())

    def __len__(self) -> int:
        return len(self.reasons)

    def most_common(self) -> tuple[tuple[str, int], ...]:
        """``(reason, count)`` pairs, the most common first."""
        return tuple(Counter(self.reasons.values()).most_common())


@dataclass(frozen=True)
class ScoreSummary:
    """What one scoring run did: queries skipped (already stored), scored and failed, and how fast.

    ``reasons`` holds ``(reason, count)`` of the failed queries, the most common first.
    """

    total: int
    skipped: int
    scored: int
    failed: int
    seconds: float
    tokens: int | None
    reasons: tuple[tuple[str, int], ...] = ()

    def failure_line(self, limit: FailureLimit | None = None) -> str | None:
        """One line on the failures, naming the most common reason (``None`` when nothing failed), e.g.
        ``3 of 10 queries failed; most common: ConnectError: ... (3)``; with ``limit``, says it was exceeded."""
        if not self.failed:
            return None
        line = f"{self.failed} of {self.total} queries failed"
        if limit is not None and limit.describe() is not None:
            line += f" ({limit.describe()})"
        if self.reasons:
            reason, n = self.reasons[0]
            line += f"; most common: {reason[:300]}{'...' if len(reason) > 300 else ''} ({n})"
            if len(self.reasons) > 1:
                line += f"; {len(self.reasons) - 1} other reason{'s' if len(self.reasons) > 2 else ''}"
        return line

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


def check_failures(summary: ScoreSummary, limit: FailureLimit | int | float | str | None = None) -> None:
    """The end of every scoring run: raise :class:`~rarecast.errors.RunFailed` when more of its queries failed
    than ``limit`` allows (see :class:`FailureLimit`; default: every query failed)."""
    limit = FailureLimit.parse(limit)
    if limit.exceeded(summary.failed, summary.total):
        raise RunFailed(
            f"{summary.failure_line(limit)}; the store's failures table lists each query",
            failed=summary.failed,
            total=summary.total,
        )


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
    report: bool | None = None,
    max_failures: FailureLimit | int | float | str | None = None,
) -> ScoreSummary:
    """Measure ``behavior`` on every query not yet in ``store``, committing each chunk atomically.

    ``batch_tokens`` sets the backend's token budget per forward pass where it has one (hf). Returns a
    :class:`ScoreSummary`; with ``progress`` a rich progress bar (queries/s, tokens/s, ETA) is shown, and with
    ``report`` (default: as ``progress``) a summary table is printed to stderr at the end. Raises
    :class:`~rarecast.errors.RunFailed`, after storing what was scored, when more queries failed than
    ``max_failures`` allows (:class:`FailureLimit`; default: all of them).
    """
    limit = FailureLimit.parse(max_failures)
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
    scored, failures = 0, FailureTally()
    with reporter:
        for chunk in chunks:
            ok, bad = measure_chunk(chunk, backend, behavior)
            store.write(key, ok, bad)
            scored += len(ok)
            failures.add(bad)
            reporter.advance(len(chunk))
    tokens1 = getattr(backend, "tokens_processed", None)
    summary = ScoreSummary(
        total=len(queries),
        skipped=len(queries) - len(todo),
        scored=scored,
        failed=len(failures),
        seconds=time.perf_counter() - start,
        tokens=None if tokens0 is None or tokens1 is None else int(tokens1 - tokens0),
        reasons=failures.most_common(),
    )
    if progress if report is None else report:
        print_summary(summary, key, store)
    check_failures(summary, limit)
    return summary


def measure_chunk(chunk: list[Query], backend, behavior):
    """``(results, failures)`` of one chunk; a failing chunk is retried query by query to isolate the cause."""
    try:
        return _checked(chunk, behavior.measure(chunk, backend))
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:
        if len(chunk) == 1:
            return [], [(chunk[0].id, failure_reason(exc))]
    ok, bad = [], []
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


def failure_reason(exc: Exception) -> str:
    """Why one query failed, as the failures table records it: the exception's type and message. An HTTP
    backend's :class:`~rarecast.backends.http.PartialResults` for that one query gives the query's own error
    without its id ("QueryError: ... answered 400: ..."), so that failures with one cause read alike and the
    summary can count them."""
    if isinstance(exc, PartialResults) and len(exc.errors) == 1:
        (inner,) = exc.errors.values()
        return f"{type(inner).__name__}: {inner.message}"
    return f"{type(exc).__name__}: {exc}"


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
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
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
    console = Console(stderr=True)
    console.print(table)
    line = summary.failure_line()
    if line is not None:  # one unwrapped line, so that a log or a grep sees the reason whole
        console.print(line, soft_wrap=True, highlight=False, markup=False)


__all__ = [
    "FailureLimit",
    "FailureTally",
    "Progress",
    "ScoreSummary",
    "check_failures",
    "measure_chunk",
    "score",
    "run_key",
]
