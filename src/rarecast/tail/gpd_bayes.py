"""Bayesian peaks over threshold: a generalized Pareto tail for psi with a prior that centres the shape on 0.

The Gumbel-tail assumption of the paper is shape xi = 0. Real tails bend a little either way, and a maximum
likelihood GPD fit on a few dozen points is too noisy to say how much. A normal prior on xi, centred on 0,
lets the data move the shape only as far as they support; the forecast is the posterior predictive quantile,
which carries the remaining uncertainty about (xi, sigma) into the forecast instead of ignoring it.

The posterior is computed on a grid over (xi, log sigma) with a flat prior on log sigma, which is exact up to
the grid resolution, cheap, and deterministic. The tail's mass above the threshold gets a
Beta(k + 1/2, m - k + 1/2) posterior, independent of the excesses (the threshold is the (k+1)-th score).
"""

from __future__ import annotations

import numpy as np

from rarecast.errors import ForecastError
from rarecast.scores import Scores
from rarecast.tail.base import PeaksOverThreshold
from rarecast.tail.model import TailModel, gpd_log_sf

_XI = np.linspace(-0.6, 1.0, 65)
_LOG_SIGMA_OFFSET = np.linspace(-3.0, 2.0, 101)


def gpd_posterior(excess: np.ndarray, prior_sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid posterior of (xi, sigma) for GPD excesses: flattened xi, sigma and normalized weights."""
    xi, log_sigma = np.meshgrid(_XI, np.log(excess.mean()) + _LOG_SIGMA_OFFSET, indexing="ij")
    xi, sigma = xi.ravel(), np.exp(log_sigma.ravel())
    # log density of an excess is log(-d/dx sf) = log sf * (1 + xi) - log sigma, on the GPD's support
    log_sf = gpd_log_sf(excess[None, :], sigma[:, None], xi[:, None])
    loglik = np.sum((1 + xi[:, None]) * log_sf, axis=1) - len(excess) * np.log(sigma)
    logpost = loglik - 0.5 * (xi / prior_sd) ** 2
    logpost[~np.isfinite(logpost)] = -np.inf
    w = np.exp(logpost - logpost.max())
    return xi, sigma, w / w.sum()


class BayesianGPD(PeaksOverThreshold):
    """GPD excesses over the (k+1)-th largest psi with a N(0, prior_sd^2) prior on the shape.

    ``point`` picks the point forecasts of worst-query and aggregate risk: ``"map"``, the posterior mode as a
    plain GPD; ``"predictive"``, the posterior predictive distribution; or a number q in (0, 1), the
    q-quantile of each forecast's posterior, the Bayes decision when underestimating costs q / (1 - q) times
    as much as overestimating (in log-probability). Behavior frequency is a probability, so under "map" and
    "predictive" it is the posterior mean of the fraction above tau: the predictive probability that a new
    query exceeds tau, which never claims "exactly 0" when only the mode's tail ends below tau. Intervals
    draw (xi, sigma) from the posterior and the tail mass from its Beta posterior.
    """

    name = "gpd-bayes"

    def __init__(self, k: int | float | str = "auto", prior_sd: float = 0.2, point: str | float = "map",
                 min_weight: float = 1e-6):
        super().__init__(k)
        if not (isinstance(prior_sd, (int, float)) and prior_sd > 0):
            raise ForecastError(f"prior_sd must be a positive number, got {prior_sd!r}")
        is_q = isinstance(point, (int, float)) and not isinstance(point, bool) and 0 < point < 1
        if not is_q and point not in ("predictive", "map"):
            raise ForecastError(f"point must be 'map', 'predictive' or a number in (0, 1), got {point!r}")
        self.point = float(point) if is_q else point
        self.prior_sd, self.min_weight = float(prior_sd), float(min_weight)

    def point_rule(self, risk: str) -> str | float | None:
        if isinstance(self.point, float):
            return self.point
        return "mean" if risk == "behavior_frequency" else None

    def params(self) -> dict:
        return {**super().params(), "prior_sd": self.prior_sd, "point": self.point}

    def fit_sorted(self, psi_desc: np.ndarray) -> TailModel:
        if psi_desc.shape[0] != 1:
            raise ForecastError("gpd-bayes fits one sample at a time; its intervals come from the posterior")
        k, u, excess, atoms, weights = self.split(psi_desc)
        xi, sigma, w = gpd_posterior(excess[0], self.prior_sd)
        if self.point == "predictive":
            keep = np.flatnonzero(w > self.min_weight * w.max())
        else:
            keep = np.array([np.argmax(w)])
        mix = w[keep] / w[keep].sum()
        m = psi_desc.shape[1]
        zeta = (k + 0.5) / (m + 1.0)  # posterior mean of the tail mass
        return TailModel(atoms, weights * (1 - zeta) / (1 - k / m), u, np.array([zeta]),
                         sigma[keep][None, :], xi[keep][None, :], mix=mix[None, :])

    def draws(self, scores: Scores, n_draws: int, rng: np.random.Generator) -> TailModel:
        psi = self.check(scores)[None, :]
        k, _, excess, _, _ = self.split(psi)
        xi, sigma, w = gpd_posterior(excess[0], self.prior_sd)
        idx = rng.choice(len(w), size=n_draws, p=w)
        # jitter within a grid cell so that draws are not confined to grid values
        dxi, dls = _XI[1] - _XI[0], _LOG_SIGMA_OFFSET[1] - _LOG_SIGMA_OFFSET[0]
        xi_d = xi[idx] + rng.uniform(-dxi / 2, dxi / 2, n_draws)
        sigma_d = sigma[idx] * np.exp(rng.uniform(-dls / 2, dls / 2, n_draws))
        return self.posterior_replicates(psi, k, sigma_d, xi_d, rng)
