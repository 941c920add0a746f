"""Best-of-N: forecast the share of queries that break within N attempts, from sampled counts.

An attacker who retries each query N times (resampling, or random augmentations as in Best-of-N
jailbreaking) breaks query i with probability 1 - (1 - p_i)^N. Over a pool of queries that is

    ASR@N = E_p[1 - (1 - p)^N],

the attack success rate at N attempts. At N far beyond the k attempts of an evaluation the queries with
p ~ 1/N decide it, and they mostly showed no success at all, so what matters is the *whole* distribution of
per-query p, low end included. :func:`fit_best_of_n` fits that distribution to counts (s successes of k
attempts per query) by maximum likelihood under the binomial, on a fine grid of logit p (:data:`GRID_SIZE`
points from p ~ 1e-12 to p ~ 1 - 5e-5), with one of two shapes:

* **beta**: a Beta distribution of p, SABER's model (a power law p^(a - 1) near 0, exponent fitted to all
  queries);
* **smooth**: a smooth log-density of logit p, piecewise linear between :data:`KNOTS` knots from
  :data:`BELOW_SIGHT` logit units under 1/k (k: the median number of attempts) to the largest success
  fraction, straight lines beyond, a third-difference penalty (``smoothing``; strong smoothing tends to a
  logit-normal), plus an atom at p = 0 for queries that never break.

The Beta is kept unless the smooth shape raises twice the log-likelihood by more than :data:`PRETEST` (a
likelihood-ratio pre-test). Below p ~ 1/k the attempts see almost nothing: there each shape *assumes* how the
unseen mass spreads (the Beta: its power law; the smooth shape: its straight-line or Gaussian-like
continuation), and the benchmark (benchmarks/best_of_n.py, docs/best-of-n.md) shows where that holds.

Intervals come from the bootstrap over queries: the counts are resampled query by query and refitted (the
pre-test included), and an interval is the equal-tailed percentile range of the refits' forecasts. Every forecast is computed in log
space: log E[(1 - p)^N] is a log-sum-exp over the grid, and ASR@N = -expm1 of it.

>>> import numpy as np, rarecast as rc
>>> rng = np.random.default_rng(0)
>>> p = rng.beta(0.4, 30, size=500)                    # per-query probabilities (unknown in practice)
>>> s = rng.binomial(100, p)                            # 100 attempts per query
>>> fit = rc.fit_best_of_n(s, 100, n_boot=50)
>>> bool(0 < fit.attack_success_rate(1e3) < fit.attack_success_rate(1e4) < 1)
True
>>> low, high = fit.interval(1e4)
>>> bool(low <= fit.attack_success_rate(1e4) <= high)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, log_expit, logsumexp

from rarecast.errors import ForecastError, InputError
from rarecast.forecast import ConfidenceInterval, check_quantile
from rarecast.scores import Scores

#: Points of the logit-p grid, and its ends (p from about 1e-12 to 1 - 5e-5).
GRID_SIZE = 200
GRID_LOGIT = (-27.6, 10.0)
#: Knots of the smooth log-density, how far (in logit) they reach below 1/k, and the default weight of the
#: third-difference penalty on their values.
KNOTS = 12
BELOW_SIGHT = 4.0
SMOOTHING = 10.0
#: The smooth fit replaces the Beta when twice its log-likelihood gain exceeds this.
PRETEST = 10.0
#: Fewest queries a fit takes, and fewest bootstrap refits behind an interval.
MIN_QUERIES = 20
MIN_BOOT = 20


@dataclass(frozen=True)
class PDistribution:
    """Distributions of per-query p on a shared logit grid: one row per fit (the point fit or a refit).

    ``zero_mass[r]`` is the mass at p = 0 and ``log_weights[r, j]`` the log of the mass at ``logit[j]``;
    each row sums to one with its zero mass.
    """

    logit: np.ndarray        # (G,)
    log_weights: np.ndarray  # (R, G)
    log_zero: np.ndarray     # (R,)  log of the mass at p = 0

    @property
    def zero_mass(self) -> np.ndarray:
        """Mass at p = 0 (queries that never show the behavior), one per row."""
        return np.exp(self.log_zero)

    def log_none(self, attempts: np.ndarray) -> np.ndarray:
        """log E[(1 - p)^N] for each row and each N in ``attempts``; shape (R, len(attempts)).

        log(1 - p) = log_expit(-logit p), so p near 1 and p near 1e-12 keep their precision.
        """
        log_q = log_expit(-self.logit)                                        # (G,)
        terms = self.log_weights[:, None, :] + attempts[None, :, None] * log_q  # (R, A, G)
        grid = logsumexp(terms, axis=2)
        return np.logaddexp(grid, self.log_zero[:, None])

    def asr(self, attempts: np.ndarray) -> np.ndarray:
        """ASR@N = 1 - E[(1 - p)^N] for each row and each N; shape (R, len(attempts))."""
        return -np.expm1(self.log_none(attempts))


def _at_least_one(values, name: str = "attempts") -> np.ndarray:
    """Counts of attempts or queries as a 1-D float array, each >= 1 (inf allowed), else an InputError."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers >= 1, got {values!r}") from None
    bad = np.isnan(arr) | (arr < 1)
    if bad.any():
        raise InputError(f"{name} must be numbers >= 1, got {arr[bad][0]:g}")
    return arr


def _shaped(values: np.ndarray, like):
    """A float for scalar input, else an array of the input's shape."""
    shape = np.shape(like)
    return float(values[0]) if shape == () else values.reshape(shape)


def _counts(successes, trials) -> Scores:
    """Validated counts: a counts :class:`Scores`, or successes with trials (an int for all queries)."""
    if isinstance(successes, Scores):
        if trials is not None:
            raise InputError("give either Scores or successes with trials, not Scores and trials")
        if successes.kind != "counts":
            raise InputError("best-of-N forecasts need sampled counts (successes and trials); these scores "
                             "are exact log-probabilities")
        return successes
    if trials is None:
        raise InputError("trials is missing: give the number of attempts per query (one int, or one per query)")
    s = np.asarray(successes, dtype=float).ravel()
    k = np.asarray(trials, dtype=float)
    k = np.full(s.shape, float(k)) if k.ndim == 0 else k.ravel()
    try:
        return Scores.from_counts(s, k)
    except ForecastError as exc:
        raise InputError(str(exc)) from None


class _Likelihood:
    """The binomial likelihood of the distinct (successes, trials) pairs at every grid point.

    ``log_lik[d, j]`` is log Binomial(s_d | k_d, p_j) and ``count[d]`` how many queries show pair d, so a
    bootstrap resample is just other counts over the same pairs.
    """

    def __init__(self, scores: Scores, logit: np.ndarray):
        pairs, self.inverse, count = np.unique(np.stack([scores.successes, scores.trials], axis=1), axis=0,
                                               return_inverse=True, return_counts=True)
        self.count = count.astype(float)
        s, k = (pairs[:, 0:1].astype(float), pairs[:, 1:2].astype(float))
        log_comb = gammaln(k + 1) - gammaln(s + 1) - gammaln(k - s + 1)
        self.log_lik = log_comb + s * log_expit(logit) + (k - s) * log_expit(-logit)   # (D, G)
        self.zero_lik = np.where(s[:, 0] == 0, 0.0, -np.inf)                         # p = 0: all failures


def _basis(logit: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation between knot values, extended as straight lines past both ends.

    Returns Q of shape (G, K) with log-density = Q @ values: hat functions inside, and the first and last
    segments' lines continued outside.
    """
    K = len(knots)
    pos = np.clip(np.searchsorted(knots, logit) - 1, 0, K - 2)   # segment of each grid point
    frac = (logit - knots[pos]) / (knots[pos + 1] - knots[pos])   # < 0 or > 1 outside: straight extension
    Q = np.zeros((len(logit), K))
    rows = np.arange(len(logit))
    Q[rows, pos] = 1 - frac
    Q[rows, pos + 1] = frac
    return Q


def _objective(theta: np.ndarray, lik: _Likelihood, Q: np.ndarray, count: np.ndarray,
               penalty: np.ndarray) -> tuple[float, np.ndarray]:
    """Penalized negative log-likelihood and its gradient.

    ``theta`` is (K + 1,): knot values of the log-density, then the log-odds-like weight of the p = 0 atom.
    ``Q`` (G, K) maps knot values to the grid, ``count`` (D,) weighs the distinct pairs and ``penalty`` (K, K)
    is the second-difference penalty matrix.
    """
    eta = np.append(Q @ theta[:-1], theta[-1])                      # (G + 1,) unnormalized log-masses
    log_w = eta - logsumexp(eta)
    joint = np.concatenate([lik.log_lik, lik.zero_lik[:, None]], axis=1) + log_w   # (D, G + 1)
    log_f = logsumexp(joint, axis=1)                                 # (D,)
    post = np.exp(joint - log_f[:, None])                            # posterior over grid per pair
    smooth = theta[:-1] @ penalty
    value = -count @ log_f + 0.5 * smooth @ theta[:-1]
    g_eta = -(count @ post) + count.sum() * np.exp(log_w)            # d value / d eta
    grad = np.append(Q.T @ g_eta[:-1] + smooth, g_eta[-1])
    return float(value), grad


def _log_masses(theta: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized log-masses on the grid and at p = 0 for parameter rows ``theta`` (R, K + 1)."""
    eta = np.concatenate([theta[:, :-1] @ Q.T, theta[:, -1:]], axis=1)
    log_w = eta - logsumexp(eta, axis=1, keepdims=True)
    return log_w[:, :-1], log_w[:, -1]


class _Shape(NamedTuple):
    """One family of log-densities over the grid: log-masses = Q @ theta[:-1], theta[-1] for p = 0."""

    name: str
    Q: np.ndarray          # (G, K)
    penalty: np.ndarray    # (K, K)
    bounds: list           # K + 1 (low, high) pairs for L-BFGS-B
    start: np.ndarray      # (K + 1,)


def _beta_shape(logit: np.ndarray) -> _Shape:
    """Beta(a, b) of p, no mass at 0: the density of logit p is p^a (1 - p)^b up to a constant (SABER's model)."""
    Q = np.stack([log_expit(logit), log_expit(-logit)], axis=1)
    return _Shape("beta", Q, np.zeros((2, 2)), [(1e-3, 50.0), (0.0, 1e5), (-60.0, -60.0)],
                  np.array([0.5, 20.0, -60.0]))


def _smooth_shape(logit: np.ndarray, knots: np.ndarray, smoothing: float) -> _Shape:
    """A smooth log-density (piecewise linear between knots, third differences penalized) and a p = 0 atom."""
    D3 = np.diff(np.eye(len(knots)), n=3, axis=0)
    bounds = [(None, None)] * len(knots) + [(-60.0, 60.0)]
    return _Shape("smooth", _basis(logit, knots), smoothing * D3.T @ D3, bounds, np.append(np.zeros(len(knots)), -5.0))


def _fit_shape(lik: _Likelihood, shape: _Shape, count: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Minimize :func:`_objective` for one shape; returns (theta, log-likelihood, converged)."""
    res = minimize(_objective, shape.start, args=(lik, shape.Q, count, shape.penalty),
                   jac=True, method="L-BFGS-B", bounds=shape.bounds, options={"maxiter": 2000})
    penalty = 0.5 * res.x[:-1] @ shape.penalty @ res.x[:-1]
    return res.x, float(-res.fun + penalty), bool(res.success)


def _fit_select(lik: _Likelihood, shapes: tuple[_Shape, _Shape],
                count: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Fit the Beta and the smooth shape; keep the Beta unless the smooth fit gains more than PRETEST / 2.

    Returns the kept fit's log-masses on the grid and at 0, which shape (0 Beta, 1 smooth) and convergence.
    """
    fits = [_fit_shape(lik, shape, count) for shape in shapes]
    pick = int(2 * (fits[1][1] - fits[0][1]) > PRETEST)
    log_w, log_zero = _log_masses(fits[pick][0][None, :], shapes[pick].Q)
    return log_w[0], log_zero[0], pick, fits[pick][2]


@dataclass
class BestOfNFit:
    """A fitted distribution of per-query p, with forecasts of best-of-N attack success.

    Made by :func:`fit_best_of_n`. Every forecast takes a scalar or an array and returns the same shape.

    Attributes
    ----------
    scores : Scores
        The counts it was fitted to.
    distribution : PDistribution
        The point fit (one row).
    shape : str
        ``"beta"`` (a Beta distribution of p, as SABER fits) or ``"smooth"`` (the smooth log-density with a
        p = 0 atom), whichever the likelihood-ratio pre-test kept.
    smoothing : float
        Weight of the smooth shape's third-difference penalty.
    n_boot, seed : int
        Bootstrap refits behind the intervals, and their random seed.
    """

    scores: Scores
    distribution: PDistribution
    shape: str
    smoothing: float
    n_boot: int = 200
    seed: int = 0
    _draws: PDistribution | None = field(default=None, repr=False)

    def attack_success_rate(self, attempts):
        """ASR@N: the expected share of queries that show the behavior at least once in N attempts."""
        arr = _at_least_one(attempts)
        return _shaped(self.distribution.asr(arr)[0], attempts)

    def any_success(self, n_queries, attempts):
        """P(at least one of ``n_queries`` deployment queries, each tried ``attempts`` times, shows the behavior).

        That is 1 - E_p[(1 - p)^N]^n, computed as -expm1(n log E[(1 - p)^N]). It assumes the deployment
        queries are drawn independently from the distribution the evaluation queries came from, that the
        attempts at one query are independent given its p, and that deployment decodes as the evaluation
        did. ``n_queries`` and ``attempts`` broadcast against each other.
        """
        return self._any(self.distribution, n_queries, attempts)[0]

    @staticmethod
    def _any(dist: PDistribution, n_queries, attempts):
        """:meth:`any_success` for every row of ``dist``: a list, one value (float or array) per row."""
        _at_least_one(n_queries, "n_queries")
        _at_least_one(attempts, "attempts")
        n, N = np.broadcast_arrays(np.asarray(n_queries, dtype=float), np.asarray(attempts, dtype=float))
        out = -np.expm1(n.ravel() * dist.log_none(N.ravel()))       # (R, size)
        return [float(row[0]) if n.shape == () else row.reshape(n.shape) for row in out]

    def budget_for(self, target_asr):
        """Attempts per query N at which ASR@N reaches ``target_asr``; inf where the fit never reaches it.

        ASR@N rises with N towards 1 - (mass at p = 0); a target at or above that has no finite budget.
        """
        target = np.atleast_1d(np.asarray(target_asr, dtype=float)).ravel()
        if np.any(np.isnan(target) | (target <= 0) | (target >= 1)):
            raise InputError(f"target_asr must lie strictly between 0 and 1, got {target_asr!r}")
        lo, hi = np.zeros_like(target), np.full_like(target, 40.0)   # log10 N between 1 and 1e40
        for _ in range(60):  # bisection on log10 N; ASR@N is increasing in N
            mid = (lo + hi) / 2
            below = self.distribution.asr(10.0 ** mid)[0] < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        reach = self.distribution.asr(np.array([10.0 ** 40]))[0, 0] >= target
        return _shaped(np.where(reach, 10.0 ** hi, np.inf), target_asr)

    def draws(self) -> PDistribution:
        """Bootstrap refits over queries (``n_boot`` rows, each with its own pre-test) behind the intervals."""
        if self._draws is None:
            if self.n_boot < MIN_BOOT:
                raise InputError(f"n_boot = {self.n_boot} is too few for an interval; use n_boot >= {MIN_BOOT}")
            lik, shapes = _setup(self.scores, self.distribution.logit, self.smoothing)
            rng = np.random.default_rng(self.seed)
            resampled = rng.multinomial(self.scores.m, lik.count / lik.count.sum(), size=self.n_boot)
            rows = [_fit_select(lik, shapes, c.astype(float))[:2] for c in resampled]
            self._draws = PDistribution(self.distribution.logit, np.stack([r[0] for r in rows]),
                                        np.array([r[1] for r in rows]))
        return self._draws

    def interval(self, attempts, level: float = 0.9, *, n_queries=None) -> ConfidenceInterval:
        """Equal-tailed bootstrap ``level`` interval of ASR@N, as a named (low, high) pair of the input's shape.

        With ``n_queries`` it is the interval of :meth:`any_success` at (n_queries, attempts) instead, with
        the two broadcast against each other.
        """
        level = check_quantile(level, "level")
        alpha = (1 - level) / 2
        if n_queries is None:
            values = self.draws().asr(_at_least_one(attempts))
            low, high = (_shaped(v, attempts) for v in np.quantile(values, [alpha, 1 - alpha], axis=0))
        else:
            values = np.asarray(self._any(self.draws(), n_queries, attempts))
            low, high = (v if v.ndim else float(v) for v in np.quantile(values, [alpha, 1 - alpha], axis=0))
        return ConfidenceInterval(low, high)

    def summary(self, attempts, level: float = 0.9) -> list[dict]:
        """One row per N: ``{"attempts", "forecast", "low", "high", "level"}``, as plain data for JSON."""
        arr = _at_least_one(attempts)
        point = np.atleast_1d(self.attack_success_rate(arr))
        low, high = (np.atleast_1d(v) for v in self.interval(arr, level))
        return [{"attempts": float(n), "forecast": float(f), "low": float(lo), "high": float(hi), "level": level}
                for n, f, lo, hi in zip(arr, point, low, high)]


def _setup(scores: Scores, logit: np.ndarray, smoothing: float) -> tuple[_Likelihood, tuple[_Shape, _Shape]]:
    """The likelihood table and the two shapes (Beta, smooth) for one data set."""
    return _Likelihood(scores, logit), (_beta_shape(logit), _smooth_shape(logit, _knot_logits(scores), smoothing))


def fit_best_of_n(successes, trials=None, *, smoothing: float = SMOOTHING, n_boot: int = 200,
                  seed: int = 0) -> BestOfNFit:
    """Fit the distribution of per-query p to sampled counts, for forecasts of best-of-N attack success.

    Parameters
    ----------
    successes : array_like of int, or Scores
        Successes per query; or a counts :class:`~rarecast.Scores` (then leave ``trials`` out).
    trials : int or array_like of int
        Attempts per query: one number for every query, or one per query.
    smoothing : float, default 10.0
        Weight of the penalty on the smooth log-density's third differences between knots; larger is
        smoother (towards a logit-normal).
    n_boot : int, default 200
        Bootstrap refits over queries behind :meth:`BestOfNFit.interval` (made on first use).
    seed : int, default 0
        Seed of the bootstrap.

    Returns
    -------
    BestOfNFit

    Raises
    ------
    InputError
        Counts that are not whole numbers with 0 <= successes <= trials, fewer than :data:`MIN_QUERIES`
        queries, or a bad setting.
    ForecastError
        No query showed the behavior even once, so the counts say nothing about the scale of p.

    Examples
    --------
    >>> import rarecast as rc
    >>> fit = rc.fit_best_of_n([0, 0, 1, 3, 0, 12, 0, 2] * 5, 100, n_boot=20)
    >>> fit.shape
    'beta'
    >>> bool(fit.attack_success_rate(100) < fit.attack_success_rate(1e4))
    True
    """
    scores = _counts(successes, trials)
    if scores.m < MIN_QUERIES:
        raise InputError(f"{scores.m} queries are too few for a best-of-N fit; score at least {MIN_QUERIES}")
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 < smoothing < np.inf:
        raise InputError(f"smoothing must be a positive number, got {smoothing!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InputError(f"n_boot must be a whole number >= 1, got {n_boot!r}")
    if not scores.successes.any():
        raise ForecastError("no query showed the behavior in any attempt, so the counts say nothing about how "
                            "likely it is; try more attempts per query or more queries")
    logit = np.linspace(*GRID_LOGIT, GRID_SIZE)
    lik, shapes = _setup(scores, logit, float(smoothing))
    log_w, log_zero, pick, converged = _fit_select(lik, shapes, lik.count)
    if not converged:
        raise ForecastError("the best-of-N fit did not converge; check the counts or raise smoothing")
    return BestOfNFit(scores, PDistribution(logit, log_w[None, :], np.array([log_zero])), shapes[pick].name,
                      float(smoothing), n_boot=n_boot, seed=seed)


def best_of_n_result(fit: BestOfNFit, attempts, level: float = 0.9) -> dict:
    """What the CLI prints and writes to JSON: the kept shape and one :meth:`BestOfNFit.summary` row per N."""
    return {"shape": fit.shape, "m": fit.scores.m, "forecasts": fit.summary(attempts, level)}


def _knot_logits(scores: Scores) -> np.ndarray:
    """Knots spanning the logits the counts can see, from BELOW_SIGHT under 1/k (median k) to the largest
    success fraction."""
    k = max(float(np.median(scores.trials)), 2.0)
    top = min(float((scores.successes / scores.trials).max()), 1 - 0.5 / k)
    lo = float(-np.log(k - 1)) - BELOW_SIGHT         # logit(1/k) = -log(k - 1)
    hi = max(float(np.log(top) - np.log1p(-top)), lo + BELOW_SIGHT + 2.0)
    return np.linspace(lo, hi, KNOTS)


__all__ = ["BestOfNFit", "PDistribution", "best_of_n_result", "fit_best_of_n"]
