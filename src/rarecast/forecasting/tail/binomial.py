"""Tail fit for sampled estimates: s of k successes per query, treated as binomial observations.

A query with 0 successes in k samples says only that its p is probably below a few / k; turning it into a
tiny made-up probability would invent the very tail we want to measure. Instead the distribution of the latent
psi is modelled as

* a body: free weights on a grid of scores below a threshold u (p = 0 included), and
* a tail: generalized Pareto excesses of psi above u with mass ``tail_mass``, scale ``sigma`` and shape ``xi``,

and fitted by maximizing the marginal binomial likelihood of the counts, sum_i log sum_c pi_c P(s_i | k_i, c).
The weights are solved by EM for each (xi, sigma) on a grid, and the profile over that grid, times priors on
both, is the posterior that forecasts and intervals draw from. Queries with the same counts share one row, so
EM runs over the few distinct (s, k) pairs rather than over every query.

The prior on sigma matters when the counts barely see the tail (a few successes in 100 samples): the profile is
then nearly flat over sigma, and a flat prior let the draws run to scales at which p reaches 1 within one step
of psi, forecasting worst-query risks an order of magnitude too high and refusing some splits outright. Its
median, 0.13, and spread come from the exact pools, where sigma is well measured: the gpd-bayes tail scale of
every real pool we scored lies between 0.06 and 0.22 (``benchmarks/tail_scale.py``, docs/tail-scale.log).
The shape has the N(0, shape_sd^2) prior of gpd-bayes, centred on the paper's Gumbel-tail assumption; with
``shape_sd=0`` the tail is exponential, as in the paper. The shape lets a light tail (log-normal p) bend down,
which an exponential tail over-forecasts 1,000x out (docs/count-shape-prior.log).
"""

from __future__ import annotations

import warnings

import numpy as np

from rarecast.errors import ForecastError, RarecastWarning
from rarecast.forecasting.tail.base import TailEstimator, check_k, require_int, require_positive, resolve_k
from rarecast.forecasting.tail.model import TailModel, gpd_log_sf
from rarecast.scores import Scores, psi_from_logp

# The tail integral runs over a fixed grid of psi: with many trials per query the binomial likelihood is
# narrow in p, and a 40-node Gauss-Laguerre rule missed it (forecasts fell as trials grew). Steps of 0.01 in
# psi resolve it; p is within 3e-4 of 1 at the grid's top, where the rest of the tail's mass is lumped.
_PSI_STEP = 0.01
_PSI_TOP = 8.0
#: successes at which a count resolves its p well enough for the threshold to sit on it (see _design)
_RESOLVED = 5
_LOG_SIGMA_GRID = np.linspace(np.log(0.02), np.log(5.0), 48)
#: shape grid in units of shape_sd: +-2.5 prior standard deviations in 11 steps
_XI_UNITS = np.linspace(-2.5, 2.5, 11)


def binomial_loglik(s: np.ndarray, k: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """log P(s | k, p) without the binomial coefficient (constant in p), for s, k (m, 1) and logp (1, C)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log1m = np.log1p(-np.exp(logp))
        a = np.where(s > 0, s * logp, 0.0)
        b = np.where(k - s > 0, (k - s) * log1m, 0.0)
    return a + b


class BinomialPOT(TailEstimator):
    """Generalized Pareto tail for psi fitted to sampled counts by marginal binomial likelihood.

    The threshold u sits at the score of the (k+1)-th query ranked by (s + 1/2) / (trials + 1) when that query
    has at least 5 successes, so its p is resolved. Otherwise it sits no higher than p = 1 / trials: below it a
    query's counts say little about its p, so the free body weights live there, and above it the GPD
    tail must explain every count. (With the free body reaching into a range that the counts barely resolve,
    its weights can absorb the whole tail and the tail's scale is not identified.)
    """

    name = "binomial"
    interval_note = (
        "its 90% intervals covered 85% to 95% of realized deployment maxima on 2 of 4 count families of the "
        "accuracy benchmark at 100x (docs/forecast-accuracy.md) and over-covered the other two (97%): read "
        "them as conservative"
    )
    data_kind = "counts"

    def __init__(
        self,
        k: int | str = "auto",
        grid_size: int = 40,
        scale_median: float = 0.13,
        scale_sd: float = 0.7,
        shape_sd: float = 0.1,
    ):
        self.k = check_k(k)
        self.grid_size = require_int("grid_size", grid_size, 8)
        self.scale_median = require_positive("scale_median", scale_median)
        self.scale_sd = require_positive("scale_sd", scale_sd)  # inf: the flat prior on log sigma
        self.shape_sd = require_positive("shape_sd", shape_sd, zero_ok=True)  # 0: the exponential tail
        if not np.isfinite(self.shape_sd):  # the shape grid spans +-2.5 prior sds, so it needs a finite one
            raise ForecastError(f"shape_sd must be finite, got {shape_sd!r}")
        self._profiled: tuple[Scores, tuple] | None = None

    @property
    def _xis(self) -> np.ndarray:
        return _XI_UNITS * self.shape_sd if self.shape_sd > 0 else np.zeros(1)

    def _log_prior(self, xis: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
        """log of the priors on the grid, (xi, sigma), up to a constant: normal on xi, log-normal on sigma."""
        log_scale = -0.5 * (np.log(sigmas / self.scale_median) / self.scale_sd) ** 2
        log_shape = -0.5 * (xis / self.shape_sd) ** 2 if self.shape_sd > 0 else np.zeros(1)
        return log_shape[:, None] + log_scale[None, :]

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
        return u, body_logp

    @staticmethod
    def _tail_grid(s, n, u):
        """Excess cell centres above u, and every count's binomial likelihood at each as (likelihood scaled so
        that its largest cell is 1, log of that scale): (cells,), (counts, cells), (counts, 1)."""
        excess = np.arange(_PSI_STEP / 2, max(_PSI_TOP - u, 1.0), _PSI_STEP)
        grid_ll = binomial_loglik(s[:, None], n[:, None], -np.exp(-(u + excess))[None, :])
        shift = grid_ll.max(axis=1, keepdims=True)
        return excess, np.exp(grid_ll - shift), shift

    @staticmethod
    def _tail_ll(excess, grid_lik, grid_shift, sigma, xis):
        """log of the integral of P(s | psi) over GPD excesses of scale sigma, per shape and count, (xis, counts).

        One matrix product over the cells with both factors scaled to a largest value of 1: terms it loses to
        underflow are 1e-308 of the largest, and logsumexp over the same cells took most of a fit's time.
        """
        lower = gpd_log_sf(excess - _PSI_STEP / 2, sigma, xis[:, None])
        upper = gpd_log_sf(excess + _PSI_STEP / 2, sigma, xis[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):  # cells past a bounded tail's end hold nothing
            log_mass = np.where(np.isfinite(lower), lower + np.log(-np.expm1(upper - lower)), -np.inf)
        log_mass[:, -1] = lower[:, -1]  # everything beyond the last cell's lower edge
        mass_shift = log_mass.max(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):  # a count that no cell of this tail can produce
            return np.log(np.exp(log_mass - mass_shift) @ grid_lik.T) + mass_shift + grid_shift.T

    @staticmethod
    def _em(ll: np.ndarray, count: np.ndarray, pi: np.ndarray, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """Mixture weights maximizing sum_i count_i log sum_c pi_c exp(ll_ic), and that maximum.

        One problem per leading index: ll is (problems, counts, components) and pi (problems, components); they
        are solved together so that the Python loop runs once for all of them.
        """
        shift = ll.max(axis=2)
        lik = np.exp(ll - shift[:, :, None])
        lik_t = lik.transpose(0, 2, 1)
        for _ in range(iters):
            mix = (lik @ pi[:, :, None])[:, :, 0]
            new = pi * (lik_t @ (count / mix)[:, :, None])[:, :, 0] / count.sum()
            converged = np.max(np.abs(new - pi)) < 1e-9
            pi = new
            if converged:
                break
        return pi, (np.log((lik @ pi[:, :, None])[:, :, 0]) + shift) @ count

    def profile(self, scores: Scores):
        """Profile log-likelihood over the (xi, sigma) grid: (u, body log p grid, xis, sigmas, logliks, weights).

        ``logliks`` is (xis, sigmas) and ``weights`` (xis, sigmas, body cells + 1), the tail's mass last.
        """
        # A fit calls fit_point and then draws on the same scores, and the profile is most of the cost of each.
        if self._profiled is None or self._profiled[0] is not scores:
            self._profiled = (scores, self._profile(scores))
        return self._profiled[1]

    def _profile(self, scores: Scores):
        s, n, k = self.check(scores)
        u, body_logp = self._design(s, n, k)
        pairs, count = np.unique(np.column_stack([s, n]), axis=0, return_counts=True)
        s, n = pairs[:, 0], pairs[:, 1]
        body_ll = binomial_loglik(s[:, None], n[:, None], body_logp[None, :])
        excess, grid_lik, grid_shift = self._tail_grid(s, n, u)
        xis, sigmas = self._xis, np.exp(_LOG_SIGMA_GRID)
        uniform = np.full((len(xis), len(body_logp) + 1), 1.0 / (len(body_logp) + 1))
        lls = np.empty((len(xis), len(sigmas)))
        pis = np.empty((len(xis), len(sigmas), uniform.shape[1]))
        pi = uniform
        for b, sigma in enumerate(sigmas):
            tail_ll = self._tail_ll(excess, grid_lik, grid_shift, sigma, xis)
            ll = np.concatenate([np.broadcast_to(body_ll, (len(xis), *body_ll.shape)), tail_ll[:, :, None]], axis=2)
            # Warm start, blended with uniform weights: EM's multiplicative updates cannot revive a component
            # whose weight the previous scale drove to zero.
            pi, lls[:, b] = self._em(ll, count.astype(float), 0.5 * pi + 0.5 * uniform)
            pis[:, b] = pi
        return u, body_logp, xis, sigmas, lls, pis

    def _model(self, u, body_logp, xi, sigma, pi) -> TailModel:
        atoms = psi_from_logp(body_logp)[::-1][None, :].repeat(len(sigma), axis=0)
        weights = pi[:, :-1][:, ::-1]
        return TailModel(atoms, weights, np.full(len(sigma), u), pi[:, -1], np.asarray(sigma), np.asarray(xi))

    def fit_point(self, scores: Scores) -> TailModel:
        u, body_logp, xis, sigmas, lls, pis = self.profile(scores)
        a, b = np.unravel_index(np.argmax(lls + self._log_prior(xis, sigmas)), lls.shape)  # the posterior mode
        if b == len(sigmas) - 1:
            assert scores.successes is not None  # profile() has checked that these are counts
            hits = int(np.sum(scores.successes > 0))
            raise ForecastError(
                f"the counts do not pin down a tail: only {hits} queries had any success, and even with its prior "
                "on the scale the posterior prefers an ever flatter tail; sample more per query or score more queries"
            )
        return self._model(u, body_logp, xis[a : a + 1], sigmas[b : b + 1], pis[a, b][None])

    def draws(self, scores: Scores, n_draws: int, rng: np.random.Generator) -> TailModel:
        u, body_logp, xis, sigmas, lls, pis = self.profile(scores)
        log_post = (lls + self._log_prior(xis, sigmas)).ravel()
        post = np.exp(log_post - log_post.max())
        a, b = np.unravel_index(rng.choice(log_post.size, size=n_draws, p=post / post.sum()), lls.shape)
        # jitter within a grid cell so that draws are not confined to grid values
        log_step = _LOG_SIGMA_GRID[1] - _LOG_SIGMA_GRID[0]
        sigma = sigmas[b] * np.exp(rng.uniform(-log_step / 2, log_step / 2, size=n_draws))
        xi = xis[a]
        if len(xis) > 1:
            xi = xi + rng.uniform(-(xis[1] - xis[0]) / 2, (xis[1] - xis[0]) / 2, size=n_draws)
        # The tail's mass gets its own Jeffreys-Beta uncertainty, as if m * mass queries had been seen in the
        # tail: without it, a tail the counts barely see would get an interval of zero width.
        pi = pis[a, b].copy()
        m = scores.m
        zeta = rng.beta(m * pi[:, -1] + 0.5, m * (1 - pi[:, -1]) + 0.5)
        pi[:, :-1] *= ((1 - zeta) / np.maximum(1 - pi[:, -1], 1e-300))[:, None]
        pi[:, -1] = zeta
        return self._model(u, body_logp, xi, sigma, pi)
