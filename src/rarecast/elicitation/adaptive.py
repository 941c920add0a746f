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

With a model, :class:`Adaptive` is the scoring loop's policy (:func:`rarecast.elicitation.scoring.score` with
``policy=Adaptive(plan)``), on any engine. A query whose samples fail (the backend raised) is recorded in the
store's failures table and leaves the rounds with the counts it had; the run then follows the same failure rule
as every run (:mod:`rarecast.elicitation.failures`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

from rarecast.elicitation.behaviors import Outcome, Sampled, canonical_json, settings_hash
from rarecast.elicitation.engines import Measured, Task
from rarecast.elicitation.scoring import Round
from rarecast.errors import InputError
from rarecast.forecasting.tail.base import resolve_k
from rarecast.queries import Query
from rarecast.store import RunKey, Store

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


class AdaptiveRounds:
    """The state of adaptive sampling, only counts: which queries a round draws, and how many samples each.

    ``next_round()`` gives ``(indices, trials_so_far, new_trials)`` (or None when every query is settled or at
    ``max_trials``); ``record(indices, successes)`` adds a round's results, :data:`FAILED` marking a query whose
    draw failed (it keeps its counts and is drawn no more). Resumed from stored counts, the schedule continues
    exactly where it stopped.
    """

    def __init__(self, s: np.ndarray, n: np.ndarray, plan: AdaptivePlan) -> None:
        self.s, self.n = np.array(s, dtype=np.int64), np.array(n, dtype=np.int64)
        self.plan = plan
        self.left = np.zeros(len(self.n), dtype=bool)

    def next_round(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        idx = np.flatnonzero(still_open(self.s, self.n, self.plan) & ~self.left)
        if idx.size == 0:
            return None
        return idx, self.n[idx], self.plan.next_trials(self.n[idx]) - self.n[idx]

    def record(self, idx: np.ndarray, successes: np.ndarray, new: np.ndarray) -> None:
        got = np.asarray(successes, dtype=np.int64)
        ok = got >= 0
        self.left[idx[~ok]] = True
        self.s[idx[ok]] += got[ok]
        self.n[idx[ok]] += np.asarray(new, dtype=np.int64)[ok]


def sample_adaptively(s: np.ndarray, n: np.ndarray, draw: Draw, plan: AdaptivePlan) -> tuple[np.ndarray, np.ndarray]:
    """Run rounds from the counts ``(s, n)`` until every query is settled or at ``max_trials``, drawing with
    ``draw(indices, successes_so_far, trials_so_far, new_trials)`` (simulations and benchmarks; with a model,
    :class:`Adaptive` runs the same rounds inside the scoring loop)."""
    rounds = AdaptiveRounds(s, n, plan)
    while (step := rounds.next_round()) is not None:
        idx, done, new = step
        rounds.record(idx, draw(idx, rounds.s[idx], done, new), new)
    return rounds.s, rounds.n


# ----------------------------------------------------------------------------------------------------------
# With a model: the scoring loop's adaptive policy


def adaptive_key(base: RunKey, plan: AdaptivePlan) -> RunKey:
    """The store key of an adaptive run: the behavior's key with the plan in its decoding settings."""
    decoding = {**json.loads(base.settings_json), "adaptive": plan.spec()}
    return replace(base, settings_hash=settings_hash(decoding), settings_json=canonical_json(decoding))


def round_seed(seed: int | None, trials_done: int) -> int:
    """The sampling seed of a round that starts after ``trials_done`` samples: every round draws fresh replies,
    and a resumed run draws the same ones an uninterrupted run would."""
    digest = hashlib.sha256(f"{seed}|adaptive|{trials_done}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Adaptive:
    """The scoring loop's adaptive policy: rounds of fresh samples, each query stored with its cumulative counts.

    Each round groups its queries by (samples so far, new samples), so that a group shares one behavior (its k
    and its round's seed). After :func:`rarecast.elicitation.scoring.score` returns, ``successes`` and
    ``trials`` hold the final counts in query order (a failed query keeps the counts it had).
    """

    def __init__(self, plan: AdaptivePlan) -> None:
        self.plan = plan
        self.state = AdaptiveRounds(np.zeros(0), np.zeros(0), plan)  # replaced by the stored counts in rounds()
        self.index: dict[str, int] = {}  # query id -> position
        self.pending: dict[int, int] = {}  # position -> new samples asked this round, until measured

    def key(self, base: RunKey) -> RunKey:
        return adaptive_key(base, self.plan)

    def rounds(self, queries: Sequence[Query], behavior: Sampled, store: Store, key: RunKey) -> Iterator[Round]:
        if behavior.kind != "sampled":
            raise InputError("adaptive sampling applies to sampled behaviors only")
        stored = {r.query_id: (r.successes, r.trials) for r in store.rows(key)}
        counts = np.array([stored.get(q.id, (0, 0)) for q in queries], dtype=np.int64).reshape(len(queries), 2)
        self.state = AdaptiveRounds(counts[:, 0], counts[:, 1], self.plan)
        self.index = {q.id: i for i, q in enumerate(queries)}
        number = 0
        while (step := self.state.next_round()) is not None:
            idx, done, new = step
            number += 1
            self.pending = {int(i): int(k) for i, k in zip(idx, new)}
            tasks = [
                Task(
                    _with_samples(behavior, k, round_seed(behavior.sampling.seed, d)),
                    [queries[i] for i, a, b in zip(idx, done, new) if (a, b) == (d, k)],
                )
                for d, k in sorted({(int(a), int(b)) for a, b in zip(done, new)})
            ]
            yield Round(f"round {number}", tasks, total=len(idx))
            failed = np.array(list(self.pending), dtype=np.int64)
            self.state.record(failed, np.full(len(failed), FAILED), np.zeros(len(failed)))

    def record(self, measured: Measured) -> Measured:
        ok, bad = measured
        rows = []
        for qid, outcome in ok:
            i = self.index[qid]
            new = self.pending.pop(i)
            self.state.record(np.array([i]), np.array([outcome.successes]), np.array([new]))
            rows.append((qid, Outcome(successes=int(self.state.s[i]), trials=int(self.state.n[i]))))
        return rows, bad

    @property
    def successes(self) -> np.ndarray:
        return self.state.s

    @property
    def trials(self) -> np.ndarray:
        return self.state.n


def _with_samples(behavior: Sampled, k: int, seed: int) -> Sampled:
    """The same sampled behavior with ``k`` samples per query and another seed."""
    st = behavior.sampling
    return Sampled(k, behavior.grader, st.temperature, st.top_p, st.max_tokens, seed, name=behavior.name)
