"""Peaks over threshold with exponential excesses: the maximum-likelihood form of the Gumbel-tail assumption."""

from __future__ import annotations

import numpy as np

from rarecast.forecasting.tail.base import PeaksOverThreshold
from rarecast.forecasting.tail.model import TailModel
from rarecast.scores import Scores


class ExponentialPOT(PeaksOverThreshold):
    """Exponential excesses of psi over the (k+1)-th largest score, fitted by maximum likelihood.

    With ``predictive=True`` the forecast is the posterior predictive quantile under Jeffreys' prior on the
    rate: the excess survival becomes (1 + e / T)^-k with T the summed excesses, a generalized Pareto with
    shape 1/k. It equals the plug-in forecast as k grows and leans upward, by exactly the parameter
    uncertainty, when the tail sample is small; underestimating a risk is the costly error.

    Intervals come from the posterior: the rate from Gamma(k, T) and the threshold's survival from
    Beta(k + 1/2, m - k + 1/2).
    """

    name = "exponential"

    def __init__(self, k: int | float | str = "auto", predictive: bool = False):
        super().__init__(k)
        self.predictive = bool(predictive)

    def fit_sorted(self, psi_desc: np.ndarray) -> TailModel:
        k, u, excess, atoms, weights = self.split(psi_desc)
        xi = np.full_like(u, 1.0 / k if self.predictive else 0.0)
        return TailModel(atoms, weights, u, np.full_like(u, k / psi_desc.shape[1]), excess.mean(axis=1), xi)

    def draws(self, scores: Scores, n_draws: int, rng: np.random.Generator) -> TailModel:
        psi = self.check(scores)[None, :]
        k, _, excess, _, _ = self.split(psi)
        sigma = excess.sum() / rng.gamma(k, 1.0, size=n_draws)  # rate ~ Gamma(k, summed excess)
        return self.posterior_replicates(psi, k, sigma, np.zeros(n_draws), rng)
