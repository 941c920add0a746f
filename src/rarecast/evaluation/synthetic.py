"""Synthetic query distributions whose tail quantiles, frequencies and mean risk are known exactly.

They are the ground truth of benchmarks/forecast_accuracy.py and of the statistical tests. Each family says
how to draw elicitation scores and what the true deployment risks are, so forecasts can be scored without
a model in the loop.

>>> fam = FAMILIES["exponential"]
>>> round(float(fam.true_worst_query_risk(1e6)), 4)
0.01
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import integrate, stats

from rarecast.scores import Scores, logp_from_psi, p_from_psi, psi_from_logp


@dataclass(frozen=True)
class Family:
    """A distribution of psi given by its exact inverse survival function ``isf(s)`` (vectorized)."""

    name: str
    description: str
    isf: Callable[[np.ndarray], np.ndarray]
    trials: int | None = None  # sampled versions draw s ~ Binomial(trials, p)

    def sample_psi(self, rng: np.random.Generator, size) -> np.ndarray:
        return self.isf(rng.uniform(size=size))

    def sample(self, rng: np.random.Generator, m: int) -> Scores:
        """m evaluation scores: exact log p, or binomial counts for sampled families."""
        logp = logp_from_psi(self.sample_psi(rng, m))
        if self.trials is None:
            return Scores.from_logp(logp)
        successes = rng.binomial(self.trials, np.exp(logp))
        return Scores.from_counts(successes, np.full(m, self.trials))

    def true_worst_query_risk(self, n) -> np.ndarray:
        """p at the exact top-1/n quantile."""
        return p_from_psi(self.isf(1.0 / np.asarray(n, dtype=float)))

    def true_behavior_frequency(self, tau) -> np.ndarray:
        """P(p > tau), by inverting the monotone isf numerically to 1e-12 relative accuracy in log s."""
        target = psi_from_logp(np.log(np.asarray(tau, dtype=float)))
        return np.vectorize(self._sf)(target)

    def _sf(self, psi: float) -> float:
        lo, hi = -700.0, 0.0  # bisection on log s
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if self.isf(np.exp(mid)) > psi:
                lo = mid
            else:
                hi = mid
        return float(np.exp(0.5 * (lo + hi)))

    def mean_p(self) -> float:
        """E[p] = integral over s of p(isf(s)), split in log s so the rare top is resolved."""
        f = lambda t: p_from_psi(self.isf(np.exp(-t))) * np.exp(-t)  # noqa: E731
        edges = [0, 1, 3, 7, 12, 20, 35, 60, 120, 700]
        return float(sum(integrate.quad(f, a, b, limit=200)[0] for a, b in zip(edges[:-1], edges[1:])))

    def true_aggregate_risk(self, n) -> np.ndarray:
        """1 - (1 - E[p])^n: the expectation over deployment draws of 1 - prod(1 - p_i)."""
        return -np.expm1(np.asarray(n, dtype=float) * np.log1p(-self.mean_p()))


def _location_scale(z: Callable, p1: float, p2: float, s1=1e-3, s2=1e-6) -> tuple[float, float]:
    """c and scale of psi = c + scale * z(s) such that the quantiles at s1 and s2 have p = p1 and p2."""
    x1, x2 = psi_from_logp(np.log(p1)), psi_from_logp(np.log(p2))
    scale = (x2 - x1) / (z(np.array(s2)) - z(np.array(s1)))
    return float(x1 - scale * z(np.array(s1))), float(scale)


def _calibrated(z: Callable[[np.ndarray], np.ndarray], p1: float, p2: float, s1=1e-3, s2=1e-6):
    """The isf of psi = c + scale * z(s) calibrated by :func:`_location_scale`."""
    c, scale = _location_scale(z, p1, p2, s1, s2)
    return lambda s: c + scale * z(np.asarray(s, dtype=float))


def _gpd_z(xi: float):
    return lambda s: stats.genpareto.isf(s, xi)


def _mixture_isf(base: tuple, mode: tuple, weight: float):
    """isf of (1 - weight) * base + weight * mode from the components' (c, scale, z_sf), by bisection."""

    def surv(psi):
        return sum(w * z_sf((psi - c) / scale) for w, (c, scale, z_sf) in [(1 - weight, base), (weight, mode)])

    def isf(s):
        s = np.asarray(s, dtype=float)
        lo, hi = np.full(s.shape, -30.0), np.full(s.shape, 30.0)  # a psi range that holds every quantile used
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = surv(mid) > s
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return 0.5 * (lo + hi)

    return isf


def _beta_isf(a: float, b: float):
    return lambda s: psi_from_logp(np.log(stats.beta.isf(np.asarray(s, dtype=float), a, b)))


# Rare behaviors: true worst-query risk between 1e-6 and 1e-1 over 1e3 to 1e6 deployment queries.
_EXP_Z, _EXP_SF = (lambda s: -np.log(s)), (lambda z: np.exp(-np.maximum(z, 0.0)))
_EXPONENTIAL = _calibrated(_EXP_Z, 1e-5, 1e-2)
_RARE_MODE = (*_location_scale(stats.norm.isf, 0.02, 0.2, s1=0.5, s2=1e-3), stats.norm.sf)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("exponential", "exponential tail in psi (the Gumbel-tail assumption holds exactly)", _EXPONENTIAL),
        Family(
            "lognormal",
            "-log p log-normal: psi normal (the paper's baseline model holds)",
            _calibrated(stats.norm.isf, 1e-5, 1e-2),
        ),
        Family("beta", "p ~ Beta(0.1, 300): light tail in psi", _beta_isf(0.1, 300)),
        Family(
            "rare-mode",
            "exponential tail plus a high-risk mode of weight 1e-4 (rarer than 1 in m)",
            _mixture_isf((*_location_scale(_EXP_Z, 1e-5, 1e-2), _EXP_SF), _RARE_MODE, 1e-4),
        ),
        Family("frechet", "heavy tail in psi: generalized Pareto, shape +0.25", _calibrated(_gpd_z(0.25), 1e-5, 1e-2)),
        Family("bounded", "bounded tail in psi: generalized Pareto, shape -0.2", _calibrated(_gpd_z(-0.2), 1e-5, 1e-2)),
        # Sampled versions sit higher (p = 0.01 at the top 1%, 0.1 at the top 1e-6) so that k samples can see
        # the evaluation tail at all.
        Family(
            "exponential-k100",
            "exponential tail, 100 samples per query",
            _calibrated(_EXP_Z, 1e-2, 1e-1, s1=1e-2),
            trials=100,
        ),
        Family(
            "exponential-k500",
            "exponential tail, 500 samples per query",
            _calibrated(_EXP_Z, 1e-2, 1e-1, s1=1e-2),
            trials=500,
        ),
        Family(
            "lognormal-k500",
            "psi normal, 500 samples per query",
            _calibrated(stats.norm.isf, 1e-2, 1e-1, s1=1e-2),
            trials=500,
        ),
        Family("beta-k100", "p ~ Beta(0.05, 100), 100 samples per query", _beta_isf(0.05, 100), trials=100),
    ]
}
