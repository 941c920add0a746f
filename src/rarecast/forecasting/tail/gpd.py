"""Peaks over threshold with generalized Pareto excesses, and a likelihood-ratio test of shape = 0."""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

from rarecast.forecasting.tail.base import PeaksOverThreshold
from rarecast.forecasting.tail.model import TailModel

# Profile grid over v = theta * (largest excess), uniform in log1p(v): v runs from just above -1 to e^7.
_GRID = np.expm1(np.linspace(np.log(1e-4), 7.0, 800))


def gpd_profile(excess: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood (xi, sigma, log-likelihood) of GPD excesses, one fit per row of ``excess``.

    Uses Grimshaw's reduction: for theta = xi / sigma the likelihood is maximized by
    xi(theta) = mean(log1p(theta x)), leaving a one-dimensional profile that is searched on a grid and refined
    by a parabola through the best three points.
    """
    k = excess.shape[1]
    xmax = excess.max(axis=1, keepdims=True)
    theta = _GRID[None, :] / xmax  # (R, G)
    xi = np.mean(np.log1p(theta[:, None, :] * excess[:, :, None]), axis=1)
    loglik = _profile_loglik(xi, theta, k, excess.mean(axis=1, keepdims=True))
    best = np.argmax(loglik, axis=1)
    rows = np.arange(len(best))
    lo, hi = np.clip(best - 1, 0, len(_GRID) - 1), np.clip(best + 1, 0, len(_GRID) - 1)
    y0, y1, y2 = loglik[rows, lo], loglik[rows, best], loglik[rows, hi]
    denom = y0 - 2 * y1 + y2
    shift = np.where((denom < 0) & (lo != best) & (hi != best), 0.5 * (y0 - y2) / np.where(denom < 0, denom, -1), 0)
    g = np.interp(best + shift, np.arange(len(_GRID)), _GRID)
    th = (g / xmax[:, 0])[:, None]
    xi_hat = np.mean(np.log1p(th * excess), axis=1)
    ll = _profile_loglik(xi_hat[:, None], th, k, excess.mean(axis=1, keepdims=True))[:, 0]
    sigma = np.where(np.abs(th[:, 0]) < 1e-12, excess.mean(axis=1), xi_hat / np.where(th[:, 0] == 0, 1, th[:, 0]))
    return xi_hat, sigma, ll


def _profile_loglik(xi, theta, k, mean_excess):
    near_zero = np.abs(theta * mean_excess) < 1e-8
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(near_zero, mean_excess, xi / np.where(near_zero, 1.0, theta))
        ll = -k * (np.log(ratio) + 1.0 + xi)
    return np.where(np.isfinite(ll) & (ratio > 0), ll, -np.inf)


def exponential_loglik(excess: np.ndarray) -> np.ndarray:
    return -excess.shape[1] * (np.log(excess.mean(axis=1)) + 1.0)


def shape_test_pvalue(excess: np.ndarray) -> np.ndarray:
    """p-value of the likelihood-ratio test of shape = 0 (an exponential, Gumbel-domain tail) per row."""
    _, _, ll = gpd_profile(excess)
    stat = np.maximum(2 * (ll - exponential_loglik(excess)), 0.0)
    return chi2.sf(stat, df=1)


class GeneralizedParetoPOT(PeaksOverThreshold):
    """Generalized Pareto excesses of psi over the (k+1)-th largest score, by maximum likelihood.

    Shape xi > 0 is a heavier-than-Gumbel tail in psi, xi < 0 a bounded one. :func:`shape_test_pvalue` tests
    whether the data support the Gumbel-tail assumption (xi = 0).
    """

    name = "gpd"

    def fit_sorted(self, psi_desc: np.ndarray) -> TailModel:
        k, u, excess, atoms, weights = self.split(psi_desc)
        xi, sigma, _ = gpd_profile(excess)
        return TailModel(atoms, weights, u, np.full_like(u, k / psi_desc.shape[1]), sigma, xi)
