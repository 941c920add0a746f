"""Peaks over threshold with exponential excesses: the maximum-likelihood form of the Gumbel-tail assumption."""

from __future__ import annotations

import numpy as np

from rarecast.errors import ForecastError
from rarecast.scores import Scores
from rarecast.tail.base import TailEstimator, require_int, uniform_body
from rarecast.tail.model import TailModel


def default_k(m: int) -> int:
    """Tail size used when k is "auto": about sqrt(m) and at least 10.

    sqrt(m) is the classical compromise between the variance of a small tail sample and the bias of reaching
    into the body; docs/choices.md shows its benchmark against fixed fractions.
    """
    return int(max(10, round(np.sqrt(m))))


def resolve_k(k, m: int) -> int:
    """The tail size for m scores: "auto", a whole number, or a fraction of m (at least 10)."""
    if k == "auto":
        kk = default_k(m)
    elif isinstance(k, float):
        kk = max(10, int(round(k * m)))
    else:
        kk = k
    if kk >= m:
        raise ForecastError(f"k = {kk} needs more than {kk} scored queries, got {m}; score more queries or lower k")
    return kk


def check_k(k) -> int | float | str:
    """Validate a tail size: "auto", a whole number >= 2, or a fraction of m in (0, 1)."""
    if isinstance(k, float) and not isinstance(k, bool):
        if not 0 < k < 1:
            raise ForecastError(f"a fractional k must lie in (0, 1), got {k!r}")
        return k
    return k if k == "auto" else require_int("k", k, 2)


class ExponentialPOT(TailEstimator):
    """Exponential excesses of psi over the (k+1)-th largest score, fitted by maximum likelihood.

    With ``predictive=True`` the forecast is the posterior predictive quantile under Jeffreys' prior on the
    rate: the excess survival becomes (1 + e / T)^-k with T the summed excesses, a generalized Pareto with
    shape 1/k. It equals the plug-in forecast as k grows and leans upward, by exactly the parameter
    uncertainty, when the tail sample is small; underestimating a risk is the costly error.

    Intervals come from the posterior: the rate from Gamma(k, T) and the threshold's survival from
    Beta(k + 1/2, m - k + 1/2).
    """

    name = "exponential"

    def __init__(self, k: int | str = "auto", predictive: bool = False):
        self.k = check_k(k)
        self.predictive = bool(predictive)

    def params(self) -> dict:
        return {"k": self.k, "predictive": self.predictive}

    def points_needed(self, m: int) -> int:
        return resolve_k(self.k, m) + 1

    def fit_sorted(self, psi_desc: np.ndarray) -> TailModel:
        m = psi_desc.shape[1]
        k = resolve_k(self.k, m)
        u = psi_desc[:, k]
        sigma = np.mean(psi_desc[:, :k], axis=1) - u
        atoms, weights = uniform_body(psi_desc, k)
        xi = np.full_like(u, 1.0 / k if self.predictive else 0.0)
        return TailModel(atoms, weights, u, np.full_like(u, k / m), sigma, xi)

    def draws(self, scores: Scores, n_draws: int, rng: np.random.Generator) -> TailModel:
        psi = self.check(scores)[None, :]
        point = ExponentialPOT(self.k).fit_sorted(psi)
        m = psi.shape[1]
        k = resolve_k(self.k, m)
        total_excess = point.sigma[0, 0] * k
        sigma = total_excess / rng.gamma(k, 1.0, size=n_draws)
        zeta = rng.beta(k + 0.5, m - k + 0.5, size=n_draws)
        weights = np.repeat(point.weights, n_draws, axis=0) * ((1 - zeta) / (1 - k / m))[:, None]
        return TailModel(
            np.repeat(point.atoms, n_draws, axis=0), weights, np.repeat(point.threshold, n_draws),
            zeta, sigma, np.zeros(n_draws),
        )
