"""The three deployment risks: one registry (:data:`RISKS`) of what each is, and how to compute it from a fitted
psi distribution for every replicate at once.

Every other part of rarecast (forecasts, backtests, the report, the CLI) takes the risks' names, labels,
arguments and definitions from :data:`RISKS`, so a risk is added in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rarecast.errors import ForecastError
from rarecast.forecasting.tail.base import PsiDistribution
from rarecast.scores import p_from_psi, psi_from_logp


def worst_query_risk(model: PsiDistribution, n: np.ndarray) -> np.ndarray:
    """Forecast of max p over n deployment queries: p at the top-1/n quantile of psi. Shape (R, len(n))."""
    return p_from_psi(model.worst_psi(n))


def behavior_frequency(model: PsiDistribution, tau: np.ndarray) -> np.ndarray:
    """Forecast fraction of queries with p > tau. Shape (R, len(tau))."""
    return np.exp(model.log_sf(psi_from_logp(np.log(tau))))


def aggregate_risk(model: PsiDistribution, n: np.ndarray) -> np.ndarray:
    """P(at least one of n single-sample outputs shows the behavior) = 1 - (1 - E[p])^n, in log space."""
    log_keep = np.log1p(-np.minimum(model.mean_p(), 1.0))
    return -np.expm1(n[None, :] * log_keep[:, None])


def max_cdf(model: PsiDistribution, x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """P(largest of n deployment queries <= x) with the replicates of ``model`` mixed with equal weight:
    mean_r (1 - S_r(x))^n. ``x`` and ``n`` are 1-D, of one length (or n of length 1); shape (len(x),)."""
    with np.errstate(divide="ignore"):
        return np.mean(np.exp(n[None, :] * np.log1p(-np.exp(model.log_sf(x)))), axis=0)


def max_quantile_psi(model: PsiDistribution, n: np.ndarray, q: float | np.ndarray, iters: int = 40) -> np.ndarray:
    """psi that the largest of n deployment queries stays below with probability q; shape (len(n),).

    The replicates of ``model`` are mixed with equal weight into one predictive distribution of the
    deployment, so P(max <= x) = mean_r (1 - S_r(x))^n: the randomness of the maximum itself and the
    uncertainty of the fit are both in it. Solved by bisection between the replicates' own quantiles, which
    bracket the mixture's; +inf (p = 1) where even the largest of them leaves the probability below q.
    """
    n, q = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(q, dtype=float))
    own = model.isf(-np.expm1(np.log(q) / n))
    finite = np.isfinite(own)
    none = ~finite.any(axis=0)  # every replicate's quantile is p = 1 (or p = 0): so is the mixture's
    lo = np.where(none, 0.0, np.min(np.where(finite, own, np.inf), axis=0)) - 1e-9
    hi = np.where(none, 0.0, np.max(np.where(finite, own, -np.inf), axis=0)) + 1e-9

    beyond = max_cdf(model, hi, n) < q
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = max_cdf(model, mid, n) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    edge = np.where(np.any(own == np.inf, axis=0), np.inf, -np.inf)
    return np.where(none, edge, np.where(beyond, np.inf, 0.5 * (lo + hi)))


@dataclass(frozen=True)
class Risk:
    """One deployment risk: its name in the API and in files, its label for people, the argument it takes
    (``n`` deployment queries or a threshold ``tau``), how to compute it, and what it means."""

    name: str
    label: str
    argument: str
    compute: Callable[[PsiDistribution, np.ndarray], np.ndarray]
    definition: str


RISKS: dict[str, Risk] = {
    r.name: r
    for r in (
        Risk(
            "worst_query_risk",
            "worst-query risk",
            "n",
            worst_query_risk,
            "the largest elicitation probability among n deployment queries: how likely one reply to the most "
            "vulnerable query is to show the behavior.",
        ),
        Risk(
            "behavior_frequency",
            "behavior frequency",
            "tau",
            behavior_frequency,
            "the fraction of deployment queries whose elicitation probability p is above a threshold tau.",
        ),
        Risk(
            "aggregate_risk",
            "aggregate risk",
            "n",
            aggregate_risk,
            "the probability that at least one of n single-sample replies (one reply to each of n queries) shows "
            "the behavior. An aggregate risk of 1 means the behavior is practically certain to occur at least "
            "once; it does not say how often.",
        ),
    )
}


def check_argument(risk: str, values) -> np.ndarray:
    """Validate n (>= 1) or tau (in (0, 1)) once, at the edge; returns a flat float array."""
    if risk not in RISKS:
        raise ForecastError(f"unknown risk {risk!r}; choose one of: {', '.join(RISKS)}")
    arr = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    if RISKS[risk].argument == "tau":
        if not np.all((arr > 0) & (arr < 1)):
            raise ForecastError(f"tau must lie strictly between 0 and 1, got {values!r}")
    elif not np.all(np.isfinite(arr) & (arr >= 1)):
        raise ForecastError(f"the number of deployment queries n must be finite and >= 1, got {values!r}")
    return arr
