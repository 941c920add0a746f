"""Adaptive sampling for sampled behaviors: spend samples on the queries that can reach the tail.

A sampled behavior costs k generations per query, yet the tail fit (rarecast.forecasting.tail.binomial) only resolves
the top points: those above its threshold u, which sits at about the (k_tail + 1)-th largest p. Everything below u
is absorbed by free body weights, so a query known to lie below the threshold needs no more samples.

Rounds: every query starts with ``first`` samples; after each round a query keeps sampling (its total grows
by ``growth``, up to ``max_trials``) while its upper confidence bound on p can still place it among the top
``keep`` queries, i.e. while fewer than ``keep`` other queries have a lower bound above it. The rest stop.
Bounds are one-sided Clopper-Pearson at ``confidence``.

Counts are recorded as they are: successes and trials per query, trials varying by query; the binomial fit
takes them as they are. No likelihood correction is needed: the decision to stop depends only on counts
already observed, so the likelihood of everything observed is the product of the Bernoulli probabilities of
the draws made, times stopping decisions that are fixed functions of the data (they do not involve p). The
stopping rule is ignorable for likelihood and Bayesian inference (docs/scale.md has the argument).

A query whose samples fail (the backend raised) is recorded in the store's failures table and leaves the
rounds with the counts it had; the run then follows the same failure rule as every engine
(:func:`rarecast.elicitation.scoring.check_failures`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

from rarecast.elicitation.scoring import (
    FailureLimit,
    FailureTally,
    ScoreSummary,
    check_failures,
    measure_chunk,
    print_summary,
)
from rarecast.errors import InputError
from rarecast.forecasting.tail.base import resolve_k
from rarecast.queries import Query

# draw(indices, successes_so_far, trials_so_far, new_trials) -> successes among the new trials, one per index;
# FAILED (negative) for a query whose draw failed
Draw = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
#: what a draw returns for a query whose samples failed: it keeps its counts and leaves the rounds
FAILED = -1


@dataclass(frozen=True)
class AdaptivePlan:
    """How adaptive sampling spends samples; recorded with every stored row."""

    first: int = 10
    growth: float = 1.5
    max_trials: int = 200
    confidence: float = 0.9
    keep: int | None = None  # None: the tail size the fit uses for this many queries, plus its threshold point

    def __post_init__(self):
        if self.first < 1 or self.max_trials < self.first:
            raise InputError(f"adaptive sampling needs 1 <= first <= max_trials, got {self.first}, {self.max_trials}")
        if self.growth <= 1:
            raise InputError(f"adaptive growth must be > 1, got {self.growth}")
        if not 0.5 <= self.confidence < 1:
            raise InputError(f"adaptive confidence must lie in [0.5, 1), got {self.confidence}")

    def spec(self) -> dict:
        """The plan as plain values (part of the run's settings)."""
        return asdict(self)

    def keep_for(self, m: int) -> int:
        """Queries whose rank must be resolved: the fit's tail size plus the threshold point."""
        if self.keep is not None:
            return int(self.keep)
        return resolve_k("auto", m) + 1 if m > 10 else m

    def next_trials(self, n: np.ndarray) -> np.ndarray:
        """Total trials after the next round, for queries that have ``n`` so far."""
        grown = np.maximum(np.ceil(n * self.growth), self.first)
        return np.minimum(grown, self.max_trials).astype(np.int64)


def bounds(s: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper-Pearson (lower, upper) bounds on p; a query with no trials gets (0, 1)."""
    s, n = np.asarray(s, float), np.asarray(n, float)
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(s > 0, stats.beta.ppf(alpha, s, n - s + 1), 0.0)
        upper = np.where(s < n, stats.beta.ppf(confidence, s + 1, n - s), 1.0)
    return np.where(n > 0, lower, 0.0), np.where(n > 0, upper, 1.0)


def still_open(s: np.ndarray, n: np.ndarray, plan: AdaptivePlan) -> np.ndarray:
    """Which queries keep sampling: below ``max_trials`` and possibly among the top ``keep``.

    A query is settled when at least ``keep`` other queries have a lower bound above its upper bound: then,
    at the plan's confidence, ``keep`` queries have a larger p and it cannot be one of the points the fit uses.
    """
    n = np.asarray(n)
    keep = plan.keep_for(len(n))
    lower, upper = bounds(s, n, plan.confidence)
    if keep >= len(n):
        return n < plan.max_trials
    order = np.sort(lower)[::-1]
    kth, next_ = order[keep - 1], order[keep]
    # Among the others: a query that is itself in the top `keep` by lower bound compares with the next one.
    bar = np.where(lower >= kth, next_, kth)
    return (upper >= bar) & (n < plan.max_trials)


def sample_adaptively(s: np.ndarray, n: np.ndarray, draw: Draw, plan: AdaptivePlan) -> tuple[np.ndarray, np.ndarray]:
    """Run rounds from the counts ``(s, n)`` until every query is settled or at ``max_trials``.

    ``draw(indices, successes_so_far, trials_so_far, new_trials)`` returns the successes among the new trials,
    or :data:`FAILED` for a query whose draw failed: that query keeps its counts and is drawn no more.
    The state is only the counts, so a run resumed from stored counts continues exactly where it stopped.
    """
    s, n = np.array(s, dtype=np.int64), np.array(n, dtype=np.int64)
    left = np.zeros(len(n), dtype=bool)
    while True:
        idx = np.flatnonzero(still_open(s, n, plan) & ~left)
        if idx.size == 0:
            return s, n
        target = plan.next_trials(n[idx])
        got = np.asarray(draw(idx, s[idx], n[idx], target - n[idx]), dtype=np.int64)
        ok = got >= 0
        left[idx[~ok]] = True
        s[idx[ok]] += got[ok]
        n[idx[ok]] = target[ok]


# ----------------------------------------------------------------------------------------------------------
# With a model: rounds of backend samples, every chunk committed to the store


def adaptive_key(backend, behavior, plan: AdaptivePlan):
    """The store key of an adaptive run: the behavior's key with the plan in its decoding settings."""
    from rarecast.elicitation.behaviors import canonical_json, run_key, settings_hash

    base = run_key(backend, behavior)
    decoding = {**json.loads(base.settings_json), "adaptive": plan.spec()}
    return replace(base, settings_hash=settings_hash(decoding), settings_json=canonical_json(decoding))


def round_seed(seed: int | None, trials_done: int) -> int:
    """The sampling seed of a round that starts after ``trials_done`` samples: every round draws fresh replies,
    and a resumed run draws the same ones an uninterrupted run would."""
    digest = hashlib.sha256(f"{seed}|adaptive|{trials_done}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class AdaptiveResult:
    """What :func:`score_adaptive` did: final counts in query order (a failed query keeps the counts it had)
    and the run's :class:`~rarecast.elicitation.scoring.ScoreSummary`. Unpacks as ``(successes, trials)``."""

    successes: np.ndarray
    trials: np.ndarray
    summary: ScoreSummary

    def __iter__(self):
        return iter((self.successes, self.trials))


def score_adaptive(
    queries: Sequence[Query],
    backend,
    behavior,
    store,
    plan: AdaptivePlan,
    *,
    chunk_size: int = 8,
    report: bool = False,
    max_failures: FailureLimit | int | float | str | None = None,
) -> AdaptiveResult:
    """Adaptive sampling of ``behavior`` (kind ``sampled``) on ``queries``, resumable through ``store``.

    Each chunk of a round is committed with the queries' cumulative counts, so a killed run keeps them and a
    rerun continues from the stored counts. A query whose samples fail is recorded in the failures table and
    sampled no more. With ``report`` the end-of-run summary is printed to stderr. Returns an
    :class:`AdaptiveResult` (unpacks as the final ``(successes, trials)``); raises
    :class:`~rarecast.errors.RunFailed` when more queries failed than ``max_failures`` allows.
    """
    if behavior.kind != "sampled":
        raise InputError("adaptive sampling applies to sampled behaviors only")
    limit = FailureLimit.parse(max_failures)
    key = adaptive_key(backend, behavior, plan)
    from rarecast.store.database import KEY_COLUMNS

    stored = {r[0]: (r[2], r[3]) for r in store.rows(dict(zip(KEY_COLUMNS, key.values())))}
    s = np.array([stored.get(q.id, (0, 0))[0] for q in queries], dtype=np.int64)
    n = np.array([stored.get(q.id, (0, 0))[1] for q in queries], dtype=np.int64)
    failures, drawn, start_time = FailureTally(), set(), time.perf_counter()

    def draw(idx: np.ndarray, hits: np.ndarray, done: np.ndarray, new: np.ndarray) -> np.ndarray:
        got = np.zeros(len(idx), dtype=np.int64)
        for start in range(0, len(idx), chunk_size):
            part = slice(start, start + chunk_size)
            got[part], bad = _draw_chunk(queries, backend, behavior, idx[part], done[part], new[part])
            ok = got[part] != FAILED
            totals = zip(idx[part][ok], (hits[part] + got[part])[ok], (done[part] + new[part])[ok])
            store.write(key, [(queries[i].id, _counts(a, b)) for i, a, b in totals], bad)
            failures.add(bad)
            drawn.update(queries[i].id for i in idx[part][ok])
        return got

    s, n = sample_adaptively(s, n, draw, plan)
    scored = len(drawn - failures.reasons.keys())
    summary = ScoreSummary(
        total=len(queries),
        skipped=len(queries) - scored - len(failures),
        scored=scored,
        failed=len(failures),
        seconds=time.perf_counter() - start_time,
        tokens=None,
        reasons=failures.most_common(),
    )
    if report:
        print_summary(summary, key, store)
    check_failures(summary, limit)
    return AdaptiveResult(s, n, summary)


def _draw_chunk(queries, backend, behavior, idx, done, new) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Successes among ``new`` fresh samples per query (:data:`FAILED` where the samples failed) and the
    ``(query_id, reason)`` failures; queries are grouped by (done, new) to share a call, and a group that
    fails is retried query by query (:func:`rarecast.elicitation.scoring.measure_chunk`), as the local engine does."""
    out = np.zeros(len(idx), dtype=np.int64)
    failed: list[tuple[str, str]] = []
    for d, k in sorted({(int(a), int(b)) for a, b in zip(done, new)}):
        where = np.flatnonzero((done == d) & (new == k))
        part = _with_samples(behavior, k, round_seed(behavior.sampling.seed, d))
        ok, bad = measure_chunk([queries[idx[j]] for j in where], backend, part)
        successes = {qid: o.successes for qid, o in ok}
        out[where] = [successes.get(queries[idx[j]].id, FAILED) for j in where]
        failed += bad
    return out, failed


def _with_samples(behavior, k: int, seed: int):
    """The same sampled behavior with ``k`` samples per query and another seed."""
    from rarecast.elicitation.behaviors import Sampled

    st = behavior.sampling
    return Sampled(k, behavior.grader, st.temperature, st.top_p, st.max_tokens, seed, name=behavior.name)


def _counts(successes: int, trials: int):
    from rarecast.elicitation.behaviors import Outcome

    return Outcome(successes=int(successes), trials=int(trials))
