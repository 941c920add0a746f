"""Failed queries: the one rule every scoring run follows, whatever its engine (local, Ray) or policy.

A query that fails is recorded with its reason in the store's failures table and counted in a
:class:`FailureTally`; the run's summary names the most common reason with its count. At the end of the run
:func:`rarecast.elicitation.scoring.check_failures` raises :class:`~rarecast.errors.RunFailed` when more queries
failed than the run's :class:`FailureLimit` allows. By default a run fails only when every one of its queries
failed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rarecast.backends.http import PartialResults
from rarecast.errors import InputError


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


def failure_reason(exc: Exception) -> str:
    """Why one query failed, as the failures table records it: the exception's type and message. An HTTP
    backend's :class:`~rarecast.backends.http.PartialResults` for that one query gives the query's own error
    without its id ("QueryError: ... answered 400: ..."), so that failures with one cause read alike and the
    summary can count them."""
    if isinstance(exc, PartialResults) and len(exc.errors) == 1:
        (inner,) = exc.errors.values()
        return f"{type(inner).__name__}: {inner.message}"
    return f"{type(exc).__name__}: {exc}"
