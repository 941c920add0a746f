"""The paper's Gumbel-tail estimator: least squares of log survival on the top-k scores (Jones et al. 2025)."""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from rarecast.errors import ForecastError
from rarecast.forecasting.tail.base import TailEstimator, require_int, uniform_body
from rarecast.forecasting.tail.model import TailModel

#: Plotting positions: the survival probability paired with the j-th largest of m scores.
POSITIONS = {
    "j/m": lambda j, m: np.log(j / m),  # the paper's choice (it matches its worked example)
    "digamma": lambda j, m: digamma(j) - digamma(m + 1),  # E[log S] of the j-th largest: unbiased positions
    "weibull": lambda j, m: np.log(j / (m + 1)),
    "hazen": lambda j, m: np.log((j - 0.5) / m),
}


class GumbelOLS(TailEstimator):
    """Fit log S(psi) = a psi + b by ordinary least squares on the k largest scores.

    The forecast for n queries is where the line meets log(1/n): Q_psi(n) = -(log n + b) / a. Behavior
    frequency uses the line beyond the largest observed score and the empirical fraction inside, as in the
    paper. ``positions`` picks the plotting positions (``"j/m"`` is the paper's).
    """

    name = "gumbel-ols"

    def __init__(self, k: int = 10, positions: str = "j/m"):
        self.k = require_int("k", k, 2)
        if positions not in POSITIONS:
            raise ForecastError(f"unknown positions {positions!r}; choose one of {sorted(POSITIONS)}")
        self.positions = positions

    def points_needed(self, m: int) -> int:
        return self.k

    def line(self, psi_desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slope a and intercept b of the fitted line for every row."""
        m = psi_desc.shape[1]
        j = np.arange(1, self.k + 1)
        y = POSITIONS[self.positions](j, m)
        x = psi_desc[:, : self.k]
        # A bootstrap row of count data can hold fewer than k queries with any success; the rest of its top
        # k are p = 0 (psi = -inf) and its line comes out NaN, a replicate with no tail to fit.
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x - x.mean(axis=1, keepdims=True)
            sxx = np.sum(xc * xc, axis=1)
            a = np.sum(xc * (y - y.mean()), axis=1) / sxx
            b = y.mean() - a * x.mean(axis=1)
        return a, b

    def fit_sorted(self, psi_desc: np.ndarray) -> TailModel:
        a, b = self.line(psi_desc)
        m = psi_desc.shape[1]
        zeta = np.full(a.shape, self.k / m)
        # An exponential tail of scale -1/a through the line; u is where the line reaches survival k/m.
        sigma = -1.0 / a
        u = (np.log(zeta) - b) / a
        atoms, weights = uniform_body(psi_desc, self.k)
        return TailModel(atoms, weights, u, zeta, sigma, np.zeros_like(a), empirical=psi_desc)
