"""Choosing between query generators (red-team models) under a budget, and backtesting that choice.

Each generator has scored evaluation queries and a cost per query; a budget buys ``floor(budget / cost)``
deployment queries from it. The red team wants the generator that will surface the worst query, so the
recommendation is the generator with the largest forecast worst-query risk at the number of queries the
budget buys it (the paper's rule). Behavior frequency at tau is forecast alongside, for the report.

The backtest replays the decision on scored pools, one per generator: in each trial it draws m evaluation
queries and, disjoint from them, the queries each budget buys (see :mod:`rarecast.evaluation.backtest`), forecasts,
chooses, and checks the choice against the realized max p of every generator's deployment draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rarecast.errors import InputError
from rarecast.evaluation.backtest import TrialFits, draw_splits, mean_or_nan
from rarecast.forecasting.fit import ConfidenceInterval, fit_tail
from rarecast.scores import Scores


@dataclass(frozen=True)
class Generator:
    """A query generator: a name, its scored queries and its cost per query."""

    name: str
    scores: Scores
    cost: float

    def __post_init__(self):
        if not (np.isfinite(self.cost) and self.cost > 0):
            raise InputError(
                f"generator {self.name!r}: the cost per query must be a positive number, got {self.cost!r}"
            )


@dataclass(frozen=True)
class GeneratorForecast:
    """One generator's forecasts at the queries a budget buys: (point, low, high) of each risk."""

    name: str
    cost: float
    queries: int
    worst_query_risk: tuple[float, float, float]
    behavior_frequency: tuple[float, float, float]


@dataclass(frozen=True)
class Allocation:
    """Forecasts of every generator at one budget and the recommended generator's name."""

    budget: float
    tau: float
    level: float
    method: str
    forecasts: tuple[GeneratorForecast, ...]
    choice: str

    def to_dict(self) -> dict:
        """The allocation as plain data (the CLI's JSON)."""
        return {
            "budget": self.budget,
            "tau": self.tau,
            "level": self.level,
            "method": self.method,
            "choice": self.choice,
            "generators": [
                {
                    "name": f.name,
                    "cost": f.cost,
                    "queries": f.queries,
                    **{
                        risk: dict(zip(("forecast", "low", "high"), getattr(f, risk)))
                        for risk in ("worst_query_risk", "behavior_frequency")
                    },
                }
                for f in self.forecasts
            ],
        }


def queries_bought(budget: float, cost: float) -> int:
    """How many queries ``budget`` buys at ``cost`` each; fewer than one is an InputError."""
    n = int(np.floor(budget / cost))
    if n < 1:
        raise InputError(f"a budget of {budget:g} buys no query at {cost:g} per query")
    return n


def choose(worst: np.ndarray) -> np.ndarray:
    """Index of the generator with the largest forecast worst-query risk along the last axis (first on ties).

    NaN (a failed fit) is never chosen; a row of all NaN gives -1.
    """
    filled = np.where(np.isnan(worst), -np.inf, worst)
    return np.where(np.isnan(worst).all(axis=-1), -1, np.argmax(filled, axis=-1))


def allocate(
    generators: Sequence[Generator],
    budget: float,
    *,
    method: str | None = None,
    tau: float = 0.5,
    level: float = 0.9,
    n_draws: int = 1000,
    seed: int = 0,
) -> Allocation:
    """Forecast each generator's worst-query risk and behavior frequency at its budget; recommend one."""
    if len(generators) < 2:
        raise InputError("allocation needs at least two generators")
    out = []
    for g in generators:
        n = queries_bought(budget, g.cost)
        fit = fit_tail(g.scores, method, n_draws=n_draws, seed=seed)
        worst = _three(fit.worst_query_risk(n), fit.interval("worst_query_risk", n, level))
        freq = _three(fit.behavior_frequency(tau), fit.interval("behavior_frequency", tau, level))
        out.append(GeneratorForecast(g.name, g.cost, n, worst, freq))
        method = fit.method
    pick = int(choose(np.array([f.worst_query_risk[0] for f in out])))
    return Allocation(budget, tau, level, fit.method, tuple(out), out[pick].name)


def _three(point: float, interval: ConfidenceInterval) -> tuple[float, float, float]:
    """(point, low, high) of a scalar forecast as floats."""
    return float(point), float(interval.low), float(interval.high)


def backtest_allocation(
    pools: Sequence[np.ndarray],
    costs: Sequence[float],
    budgets: Sequence[float],
    *,
    m: int = 300,
    trials: int = 200,
    method: str = "gumbel-ols",
    margin: float = np.log10(2),
    seed: int = 0,
) -> list[dict]:
    """Decision accuracy of :func:`allocate`'s rule on pools of exact log p, one pool per generator.

    Per budget: ``accuracy`` (the chosen generator's realized max p is the largest), ``mattered`` (share of
    trials where the two largest realized maxima differ by more than ``margin`` decades) and
    ``accuracy_mattered`` (accuracy on those trials) with the baselines ``eval_max_accuracy_mattered`` (pick
    the generator whose evaluation maximum is largest) and ``random_accuracy_mattered``, ``queries`` bought
    from each generator, and the trials counted (a trial where every fit failed is left out).
    """
    if len(pools) != len(costs) or len(pools) < 2:
        raise InputError("give one cost per pool and at least two pools")
    rng = np.random.default_rng(seed)
    ns = np.array([[queries_bought(b, c) for b in budgets] for c in costs], dtype=float)  # (G, B)
    forecasts: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    eval_maxima: list[np.ndarray] = []
    for pool, n in zip(pools, ns):
        logp = Scores.from_logp(pool).logp
        assert logp is not None  # from_logp always sets it
        splits = draw_splits(logp, m, n, trials, 0.5, rng)
        fits = TrialFits.fit(method, splits.eval_logp, seed=seed)
        forecasts.append(fits.forecast("worst_query_risk", n, level=None)[0])
        truths.append(splits.truth["worst_query_risk"])
        eval_maxima.append(np.repeat(splits.eval_logp.max(axis=1, keepdims=True), len(budgets), axis=1))
    forecast, truth, eval_max = (np.stack(a, axis=-1) for a in (forecasts, truths, eval_maxima))  # (trials, B, G)
    return [
        _decision_row(budgets[b], ns[:, b], forecast[:, b], truth[:, b], eval_max[:, b], margin)
        for b in range(len(budgets))
    ]


def _decision_row(
    budget: float, queries: np.ndarray, forecast: np.ndarray, truth: np.ndarray, eval_max: np.ndarray, margin: float
) -> dict:
    """Accuracy of the choices for one budget, beside two baselines: the generator whose evaluation queries
    reached the highest p (ignoring what the budget buys), and a random pick. Arrays are (trials, G)."""
    pick = choose(forecast)
    ok = pick >= 0
    best = truth[ok].max(axis=1)
    right = truth[ok, pick[ok]] >= best
    by_eval = truth[ok, np.argmax(eval_max[ok], axis=1)] >= best
    by_chance = np.mean(truth[ok] >= best[:, None], axis=1)  # expected accuracy of a uniform random pick
    top2 = -np.sort(-np.log10(truth[ok]), axis=1)[:, :2]
    mattered = (top2[:, 0] - top2[:, 1]) > margin
    return {
        "budget": float(budget),
        "queries": [int(q) for q in queries],
        "accuracy": mean_or_nan(right),
        "mattered": mean_or_nan(mattered),
        "accuracy_mattered": mean_or_nan(right[mattered]),
        "eval_max_accuracy_mattered": mean_or_nan(by_eval[mattered]),
        "random_accuracy_mattered": mean_or_nan(by_chance[mattered]),
        "trials": int(ok.sum()),
    }


__all__ = [
    "Allocation",
    "Generator",
    "GeneratorForecast",
    "allocate",
    "backtest_allocation",
    "choose",
    "queries_bought",
]
