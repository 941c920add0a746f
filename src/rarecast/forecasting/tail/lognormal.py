"""The paper's baseline: a normal distribution for psi, i.e. a log-normal distribution of -log p."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import integrate
from scipy.special import log_ndtr, ndtri, ndtri_exp

from rarecast.errors import ForecastError
from rarecast.forecasting.tail.base import TailEstimator
from rarecast.scores import Scores, p_from_psi

_HERMITE_X, _HERMITE_W = np.polynomial.hermite_e.hermegauss(80)
_HERMITE_W = _HERMITE_W / _HERMITE_W.sum()


@lru_cache(maxsize=4096)
def _expected_max(n: float) -> float:
    # The maximum of n uniforms is U = V^(1/n); with T = -log V ~ Exp(1), log U = -T/n. Hence
    # E[max of n standard normals] = E[ndtri_exp(-T/n)], a smooth integral against e^-t.
    val, _ = integrate.quad(lambda t: ndtri_exp(-t / n) * np.exp(-t), 0, np.inf, limit=200, epsabs=1e-11)
    return val


def expected_max_normal(n) -> np.ndarray:
    """E[max of n i.i.d. standard normals], accurate to about 1e-9 for any n >= 1 (n may be fractional).

    >>> round(float(expected_max_normal(2)), 9)  # 1 / sqrt(pi)
    0.564189584
    """
    arr = np.asarray(n, dtype=float)
    return np.vectorize(_expected_max, otypes=[float])(arr)


@dataclass(frozen=True)
class NormalPsi:
    """psi ~ Normal(mu, sd) with a leading replicate axis; forecasts the expected maximum or the quantile."""

    mu: np.ndarray
    sd: np.ndarray
    expected_max: bool = True

    @property
    def replicates(self) -> int:
        return self.mu.shape[0]

    def isf(self, s) -> np.ndarray:
        s = np.atleast_1d(np.asarray(s, dtype=float))[None, :]
        return self.mu[:, None] - self.sd[:, None] * ndtri(s)

    def worst_psi(self, n) -> np.ndarray:
        n = np.atleast_1d(np.asarray(n, dtype=float))
        if not self.expected_max:
            return self.isf(1.0 / n)
        return self.mu[:, None] + self.sd[:, None] * expected_max_normal(n)[None, :]

    def log_sf(self, x) -> np.ndarray:
        x = np.atleast_1d(np.asarray(x, dtype=float))[None, :]
        return log_ndtr(-(x - self.mu[:, None]) / self.sd[:, None])

    def mean_p(self) -> np.ndarray:
        psi = self.mu[:, None] + self.sd[:, None] * _HERMITE_X[None, :]
        return p_from_psi(psi) @ _HERMITE_W

    def decays(self) -> np.ndarray:
        return np.isfinite(self.mu) & np.isfinite(self.sd) & (self.sd > 0)

    def take(self, rows) -> NormalPsi:
        return NormalPsi(self.mu[rows], self.sd[rows], self.expected_max)


class LogNormal(TailEstimator):
    """Normal fit to all finite psi; forecasts the expected maximum of n draws (the paper's baseline)."""

    name = "lognormal"
    expected_max = True
    fits_top = False  # a normal fit to all scores does not care whether the largest two tie

    def check(self, scores: Scores) -> np.ndarray:
        psi = super().check(scores)
        finite = psi[np.isfinite(psi)]
        if len(finite) < 3:
            raise ForecastError(f"method {self.name!r} needs at least 3 queries with 0 < p < 1, got {len(finite)}")
        return finite

    def fit_sorted(self, psi_desc: np.ndarray) -> NormalPsi:
        sd = psi_desc.std(axis=1, ddof=1)
        return NormalPsi(psi_desc.mean(axis=1), sd, self.expected_max)


class LogNormalQuantile(LogNormal):
    """The log-normal baseline's variant: the 1 - 1/n normal quantile instead of the expected maximum."""

    name = "lognormal-quantile"
    expected_max = False
