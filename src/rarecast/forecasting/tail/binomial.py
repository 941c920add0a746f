"""Tail fit for sampled estimates: s of k successes per query, treated as binomial observations.

A query with 0 successes in k samples says only that its p is probably below a few / k; turning it into a
tiny made-up probability would invent the very tail we want to measure. Instead the distribution of the latent
psi is modelled as

* a body: free weights on a grid of scores below a threshold u (p = 0 included), and
* a tail: exponential excesses of psi above u with mass ``tail_mass`` and scale ``sigma``,

and fitted by maximizing the marginal binomial likelihood of the counts, sum_i log sum_c pi_c P(s_i | k_i, c).
The weights are solved by EM for each sigma, and sigma by a profile over a grid, which times a log-normal prior
on sigma is the posterior that forecasts and intervals draw from.

The prior matters when the counts barely see the tail (a few successes in 100 samples): the profile is then
nearly flat over sigma, and a flat prior let the draws run to scales at which p reaches 1 within one step of
psi, forecasting worst-query risks an order of magnitude too high and refusing some splits outright. Its
median, 0.13, and spread come from the exact pools, where sigma is well measured: the gpd-bayes tail scale of
every real pool we scored lies between 0.06 and 0.22 (``benchmarks/tail_scale.py``, docs/tail-scale.log).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import logsumexp

from rarecast.errors import ForecastError, RarecastWarning
from rarecast.forecasting.tail.base import TailEstimator, check_k, require_int, require_positive, resolve_k
from rarecast.forecasting.tail.model import TailModel
from rarecast.scores import Scores, psi_from_logp

# The tail integral runs over a fixed grid of psi: with many trials per query the binomial likelihood is
# narrow in p, and a 40-node Gauss-Laguerre rule missed it (forecasts fell as trials grew). Steps of 0.01 in
# psi resolve it; p is within 3e-4 of 1 at the grid's top, where the rest of the tail's mass is lumped.
_PSI_STEP = 0.01
_PSI_TOP = 8.0
#: successes at which a count resolves its p well enough for the threshold to sit on it (see _design)
_RESOLVED = 5
_LOG_SIGMA_GRID = np.linspace(np.log(0.02), np.log(5.0), 48)


def binomial_loglik(s: np.ndarray, k: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """log P(s | k, p) without the binomial coefficient (constant in p), for s, k (m, 1) and logp (1, C)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log1m = np.log1p(-np.exp(logp))
        a = np.where(s > 0, s * logp, 0.0)
        b = np.where(k - s > 0, (k - s) * log1m, 0.0)
    return a + b


class BinomialPOT(TailEstimator):
    """Exponential tail for psi fitted to sampled counts by marginal binomial likelihood.

    The threshold u sits at the score of the (k+1)-th query ranked by (s + 1/2) / (trials + 1) when that query
    has at least 5 successes, so its p is resolved. Otherwise it sits no higher than p = 1 / trials: below it a
    query's counts say little about its p, so the free body weights live there, and above it the exponential
    tail must explain every count. (With the free body reaching into a range that the counts barely resolve,
    its weights can absorb the whole tail and the tail's scale is not identified.)
    """

    name = "binomial"
    interval_note = (
        "its 90% intervals covered 85% to 95% of realized deployment maxima on 3 of 4 count families of the "
        "accuracy benchmark at 100x (docs/forecast-accuracy.md); they under-cover log-normal counts (75%)"
    )
    data_kind = "counts"

    def __init__(self, k: int | str = "auto", grid_size: int = 40, scale_median: float = 0.13, scale_sd: float = 0.7):
        self.k = check_k(k)
        self.grid_size = require_int("grid_size", grid_size, 8)
        self.scale_median = require_positive("scale_median", scale_median)
        self.scale_sd = require_positive("scale_sd", scale_sd)  # inf: the flat prior on log sigma

    def _log_prior(self, sigmas: np.ndarray) -> np.ndarray:
        """log of the log-normal prior on the tail scale, up to a constant."""
        return -0.5 * (np.log(sigmas / self.scale_median) / self.scale_sd) ** 2

    def point_rule(self, risk: str) -> str | None:
        # The maximum-likelihood tail mass can be 0 when the counts barely see the tail; forecasts from the
        # draws as one predictive distribution stay honest there, and all three risks then share that model.
        return "predictive"

    def check(self, scores: Scores):
        if scores.kind != "counts":
            raise ForecastError(
                f"method {self.name!r} fits sampled counts; exact log-probabilities need another method"
            )
        assert scores.successes is not None and scores.trials is not None  # counts scores hold both
        m = scores.m
        k = resolve_k(self.k, m)
        hits = int(np.sum(scores.successes > 0))
        if hits < k:
            warnings.warn(
                f"only {hits} of {m} queries had any success, fewer than the {k} the tail fit needs; the tail "
                "shape rests on thin data. Sample more per query (higher k) or score more queries.",
                RarecastWarning,
                stacklevel=3,
            )
        if hits == 0:
            raise ForecastError(f"no query had a success in {int(scores.trials.max())} samples; nothing to fit")
        return scores.successes.astype(float), scores.trials.astype(float), k

    # -- the fit --------------------------------------------------------------------------------------------
    def _design(self, s, n, k):
        order = np.argsort(-(s + 0.5) / (n + 1.0), kind="stable")
        crude = np.log((s[order[k]] + 0.5) / (n[order[k]] + 1.0))
        if s[order[k]] < _RESOLVED:  # the (k+1)-th count is noise-level: keep the free body below 1/trials
            crude = min(crude, -np.log(n.max()))
        u = float(psi_from_logp(crude))
        p_u = np.exp(-np.exp(-u))
        p_min = min(1e-3 / n.max(), p_u / 100)
        body_logp = np.concatenate([[-np.inf], np.linspace(np.log(p_min), np.log(p_u), self.grid_size, endpoint=False)])
        body_ll = binomial_loglik(s[:, None], n[:, None], body_logp[None, :])
        return u, body_logp, body_ll

    @staticmethod
    def _tail_grid(s, n, u):
        """Excess cell centres above u and every query's binomial log-likelihood at each, (m, cells)."""
        excess = np.arange(_PSI_STEP / 2, max(_PSI_TOP - u, 1.0), _PSI_STEP)
        return excess, binomial_loglik(s[:, None], n[:, None], -np.exp(-(u + excess))[None, :])

    @staticmethod
    def _tail_ll(excess, grid_ll, sigma):
        """log of the integral of P(s | psi) over exponential excesses of scale sigma, per query."""
        h = _PSI_STEP
        log_mass = -(excess - h / 2) / sigma + np.log(-np.expm1(-h / sigma))  # exact mass of each cell
        log_mass[-1] = -(excess[-1] - h / 2) / sigma  # everything beyond the last cell's lower edge
        return logsumexp(grid_ll + log_mass[None, :], axis=1)

    @staticmethod
    def _em(ll: np.ndarray, pi: np.ndarray, iters: int = 200) -> tuple[np.ndarray, float]:
        shift = ll.max(axis=1, keepdims=True)
        lik = np.exp(ll - shift)
        total = float(shift.sum())
        for _ in range(iters):
            mix = lik @ pi
            new = pi * (lik.T @ (1.0 / mix)) / len(mix)
            if np.max(np.abs(new - pi)) < 1e-9:
                pi = new
                break
            pi = new
        return pi, float(np.log(lik @ pi).sum() + total)

    def profile(self, scores: Scores):
        """Profile log-likelihood over the tail scale grid: (u, body log p grid, sigmas, logliks, weights)."""
        s, n, k = self.check(scores)
        u, body_logp, body_ll = self._design(s, n, k)
        uniform = np.full(len(body_logp) + 1, 1.0 / (len(body_logp) + 1))
        pi = uniform
        sigmas = np.exp(_LOG_SIGMA_GRID)
        lls, pis = [], []
        excess, grid_ll = self._tail_grid(s, n, u)
        for sigma in sigmas:
            ll = np.column_stack([body_ll, self._tail_ll(excess, grid_ll, sigma)])
            # Warm start, blended with uniform weights: EM's multiplicative updates cannot revive a component
            # whose weight the previous scale drove to zero.
            pi, value = self._em(ll, 0.5 * pi + 0.5 * uniform)
            lls.append(value)
            pis.append(pi.copy())
        return u, body_logp, sigmas, np.array(lls), np.array(pis)

    def _model(self, u, body_logp, sigma, pi) -> TailModel:
        atoms = psi_from_logp(body_logp)[::-1][None, :].repeat(len(sigma), axis=0)
        weights = pi[:, :-1][:, ::-1]
        r = len(sigma)
        return TailModel(atoms, weights, np.full(r, u), pi[:, -1], np.asarray(sigma), np.zeros(r))

    def fit_point(self, scores: Scores) -> TailModel:
        u, body_logp, sigmas, lls, pis = self.profile(scores)
        best = int(np.argmax(lls + self._log_prior(sigmas)))  # the posterior mode
        if best == len(sigmas) - 1:
            assert scores.successes is not None  # profile() has checked that these are counts
            hits = int(np.sum(scores.successes > 0))
            raise ForecastError(
                f"the counts do not pin down a tail: only {hits} queries had any success, and even with its prior "
                "on the scale the posterior prefers an ever flatter tail; sample more per query or score more queries"
            )
        return self._model(u, body_logp, sigmas[best : best + 1], pis[best : best + 1])

    def draws(self, scores: Scores, n_draws: int, rng: np.random.Generator) -> TailModel:
        u, body_logp, sigmas, lls, pis = self.profile(scores)
        log_post = lls + self._log_prior(sigmas)
        post = np.exp(log_post - log_post.max())
        idx = rng.choice(len(sigmas), size=n_draws, p=post / post.sum())
        # jitter within a grid cell so that draws are not confined to grid values
        step = _LOG_SIGMA_GRID[1] - _LOG_SIGMA_GRID[0]
        sigma = sigmas[idx] * np.exp(rng.uniform(-step / 2, step / 2, size=n_draws))
        # The tail's mass gets its own Jeffreys-Beta uncertainty, as if m * mass queries had been seen in the
        # tail: without it, a tail the counts barely see would get an interval of zero width.
        pi = pis[idx].copy()
        m = scores.m
        zeta = rng.beta(m * pi[:, -1] + 0.5, m * (1 - pi[:, -1]) + 0.5)
        pi[:, :-1] *= ((1 - zeta) / np.maximum(1 - pi[:, -1], 1e-300))[:, None]
        pi[:, -1] = zeta
        return self._model(u, body_logp, sigma, pi)
