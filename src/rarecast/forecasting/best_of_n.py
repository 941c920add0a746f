"""Best-of-N: forecast the share of queries that break within N attempts, from sampled counts.

An attacker who retries each query N times (resampling, or random augmentations as in Best-of-N
jailbreaking) breaks query i with probability 1 - (1 - p_i)^N. Over a pool of queries that is

    ASR@N = E_p[1 - (1 - p)^N],

the attack success rate at N attempts. At N far beyond the k attempts of an evaluation the queries with
p ~ 1/N decide it, and they mostly showed no success at all, so what matters is the *whole* distribution of
per-query p, low end included. :func:`fit_best_of_n` puts a posterior on that distribution from counts (s
successes of k attempts per query), under the exact binomial likelihood on a fine grid of logit p
(:data:`GRID_SIZE` points from p ~ 1e-12 to p ~ 1 - 5e-5):

* **the family**: a Beta distribution of p (SABER's model) times a smooth correction: the log-density of
  logit p is a logit p + b log(1 - p) plus a piecewise-linear function between knots :data:`KNOT_SPACING`
  apart, from :data:`BELOW_SIGHT` logit units under 1/k (k: the median number of attempts) to
  :data:`ABOVE_TOP` over the largest success fraction, held at 0 on the end knots and beyond them;
* **the prior**: a penalty lambda/2 times the sum of squared second differences of the knot values. The Beta
  is free, so a large lambda is a Beta and a small one follows the counts closely;
* **the bend below the knots**: the intervals' posterior adds a change c of the log-density's slope below the
  lowest knot, c ~ N(0, :data:`BEND_SD`^2), because the attempts cannot tell whether the Beta's power law
  continues there (the point forecast assumes it does, c = 0);
* **the posterior**: for each lambda in :data:`SMOOTHINGS` the mode (damped Newton with the exact Hessian);
  the lambdas are weighted by their Laplace evidence (a flat prior on log lambda), so the data choose between
  a Beta and a looser shape instead of a pre-test. Posterior draws come from Hamiltonian Monte Carlo on the
  exact posterior at lambdas drawn by those weights (:func:`_draw`), not from the Laplace approximation,
  which lets little-mass regions of the grid swing far wider than the counts allow.

The point forecast reads the modes' distributions of p mixed by the lambdas' weights; an interval is the
equal-tailed range of the forecast over ``n_draws`` posterior draws of the bent model. Below p ~ 1/k the
attempts see almost nothing: below the lowest knot the Beta's power law p^(a - 1) *assumes* how the unseen
mass spreads, the bend lets the intervals doubt it, and the benchmark
(benchmarks/best_of_n.py, docs/best-of-n.md) shows where that holds. Every forecast is computed in log
space: log E[(1 - p)^N] is a log-sum-exp over the grid, and ASR@N = -expm1 of it.

>>> import numpy as np, rarecast as rc
>>> rng = np.random.default_rng(0)
>>> p = rng.beta(0.4, 30, size=500)                    # per-query probabilities (unknown in practice)
>>> s = rng.binomial(100, p)                            # 100 attempts per query
>>> fit = rc.fit_best_of_n(s, 100)
>>> bool(0 < fit.attack_success_rate(1e3) < fit.attack_success_rate(1e4) < 1)
True
>>> low, high = fit.interval(1e4)
>>> bool(low <= fit.attack_success_rate(1e4) <= high)
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg import cho_solve
from scipy.special import gammaln, log_expit, logsumexp

from rarecast.errors import ForecastError, InputError
from rarecast.forecasting.fit import ConfidenceInterval, Shaped, check_quantile
from rarecast.forecasting.profile_range import profile_range
from rarecast.scores import Scores

#: Points of the logit-p grid, and its ends (p from about 1e-12 to 1 - 5e-5).
GRID_SIZE = 200
GRID_LOGIT = (-27.6, 10.0)
#: Logit units between the knots of the smooth correction, how far its knots reach below logit(1/k) (None:
#: down to the grid's floor) and above the largest success fraction's logit.
KNOT_SPACING = 0.75
BELOW_SIGHT = 4.5
ABOVE_TOP = 3.0
#: Weights of the second-difference penalty the posterior averages over (lambda; large: a Beta).
SMOOTHINGS = tuple(10.0 ** np.arange(-1.0, 5.5, 1.0))
#: Prior sd of the bend c, the change of the log-density's slope (per logit unit) below the lowest knot, in the
#: posterior behind the intervals; chosen among 0, 0.3 and 0.5 on the benchmark (docs/best-of-n-method.md).
BEND_SD = 0.5
#: Printed beside every best-of-N interval: where benchmarks/best_of_n.py finds them off their 85% to 95% goal.
INTERVAL_NOTE = (
    "best-of-N 90% intervals covered 85% to 95% of exact ASR@N at N = 1e3 and 1e4 on 2 of 7 families of the "
    "best-of-N benchmark (docs/best-of-n.md) and over-covered a real pool at 1e4 (98% to 100%); they covered "
    "46% to 86% where the counts cannot show the shape below p ~ 1/k (queries that never break, a mode of p "
    "below 1/k, two modes, a wide logit-normal), so treat them as rough there. Counts alone leave ASR@N at 10 "
    "to 100 times the attempts per query open over a range 0.26 to 0.65 wide (docs/best-of-n-identification.md): "
    "these intervals rest on an assumption about the queries that never broke, and the counts-only range "
    "(fit.counts_only_range; in the CLI table, counts alone) shows what the counts decide without it"
)
#: Most Newton steps per fit, and the Newton decrement (twice the log-likelihood still to gain) under which a
#: fit whose line search stalls on rounding counts as converged: a gain under 0.005 moves the mode by about a
#: tenth of a posterior standard deviation or less.
MAX_NEWTON = 100
NEWTON_TOL = 1e-2
#: Fewest queries a fit takes, and fewest posterior draws behind an interval.
MIN_QUERIES = 20
MIN_DRAWS = 20
#: Hamiltonian Monte Carlo behind the intervals: chains run side by side, warm-up iterations (step sizes
#: adapt, draws dropped), leapfrog steps per iteration.
CHAINS = 40
WARMUP = 40
LEAPFROG = 10


@dataclass(frozen=True)
class PDistribution:
    """Distributions of per-query p on a shared logit grid: one row per distribution (the point forecast's, or
    one posterior draw each). ``log_weights[r, j]`` is the log of row r's mass at ``logit[j]``; rows sum to one.
    """

    logit: np.ndarray  # (G,)
    log_weights: np.ndarray  # (R, G)

    def log_none(self, attempts: np.ndarray) -> np.ndarray:
        """log E[(1 - p)^N] for each row and each N in ``attempts``; shape (R, len(attempts)).

        log(1 - p) = log_expit(-logit p), so p near 1 and p near 1e-12 keep their precision.
        """
        log_q = log_expit(-self.logit)  # (G,)
        terms = self.log_weights[:, None, :] + attempts[None, :, None] * log_q  # (R, A, G)
        log_none: np.ndarray = logsumexp(terms, axis=2)
        return log_none

    def asr(self, attempts: np.ndarray) -> np.ndarray:
        """ASR@N = 1 - E[(1 - p)^N] for each row and each N; shape (R, len(attempts))."""
        asr: np.ndarray = -np.expm1(self.log_none(attempts))
        return asr


def _at_least_one(values: ArrayLike, name: str = "attempts") -> np.ndarray:
    """Counts of attempts or queries as a 1-D float array, each >= 1 (inf allowed), else an InputError."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers >= 1, got {values!r}") from None
    bad = np.isnan(arr) | (arr < 1)
    if bad.any():
        raise InputError(f"{name} must be numbers >= 1, got {arr[bad][0]:g}")
    return arr


def _shaped(values: np.ndarray, like: ArrayLike) -> float | np.ndarray:
    """A float for scalar input, else an array of the input's shape."""
    shape = np.shape(like)
    return float(values[0]) if shape == () else values.reshape(shape)


def _counts(successes: Scores | ArrayLike, trials: ArrayLike | None) -> Scores:
    """Validated counts: a counts :class:`Scores`, or successes with trials (an int for all queries)."""
    if isinstance(successes, Scores):
        if trials is not None:
            raise InputError("give either Scores or successes with trials, not Scores and trials")
        if successes.kind != "counts":
            raise InputError(
                "best-of-N forecasts need sampled counts (successes and trials); these scores "
                "are exact log-probabilities"
            )
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

    ``log_lik[d, j]`` is log Binomial(s_d | k_d, p_j) and ``count[d]`` how many queries show pair d.
    """

    def __init__(self, scores: Scores, logit: np.ndarray) -> None:
        assert scores.successes is not None and scores.trials is not None  # counts, checked by _counts
        pairs, count = np.unique(np.stack([scores.successes, scores.trials], axis=1), axis=0, return_counts=True)
        self.count = count.astype(float)
        s, k = (pairs[:, 0:1].astype(float), pairs[:, 1:2].astype(float))
        log_comb = gammaln(k + 1) - gammaln(s + 1) - gammaln(k - s + 1)
        self.log_lik = log_comb + s * log_expit(logit) + (k - s) * log_expit(-logit)  # (D, G)
        # each row scaled by its largest entry, so that mixture likelihoods are one matrix product
        self.top = self.log_lik.max(axis=1)
        self.scaled = np.exp(self.log_lik - self.top[:, None])


class _Model(NamedTuple):
    """The log-linear family: unnormalized log-masses on the grid are ``X @ theta`` (G, P); ``S`` (P, P) is the
    smoothing penalty (zero on the Beta's two columns and the bend), ``rank`` its rank, ``start`` where the
    first Newton run starts, ``R`` (P, P) the bend's fixed prior precision (zero without a bend)."""

    X: np.ndarray
    S: np.ndarray
    rank: int
    start: np.ndarray  # a Beta: where the strongest penalty's Newton run starts
    R: np.ndarray

    def penalty(self, smoothing: float) -> np.ndarray:
        """The prior precision at penalty weight ``smoothing``: lambda S plus the bend's."""
        precision: np.ndarray = smoothing * self.S + self.R
        return precision


def _moment_beta(scores: Scores) -> tuple[float, float]:
    """A Beta matched to the success fractions' mean and between-query variance (their variance less the
    binomial noise, estimated without bias by the mean of f (1 - f) / (k - 1)): where Newton starts.

    A fixed start (Beta(0.5, 20)) left pools where nearly every attempt succeeds in a degenerate basin, all
    mass at the grid's top, where Newton stalled."""
    assert scores.successes is not None and scores.trials is not None  # counts, checked by _counts
    f = scores.successes / scores.trials
    mean = float(np.clip(f.mean(), 1e-4, 1 - 1e-4))
    between = float(f.var() - np.mean(f * (1 - f) / np.maximum(scores.trials - 1, 1)))
    total = float(np.clip(mean * (1 - mean) / between - 1, 0.5, 1e4)) if between > 0 else 1e4
    return mean * total, (1 - mean) * total


def _model(
    logit: np.ndarray, knots: np.ndarray, start_beta: tuple[float, float] = (0.5, 20.0), bend_sd: float = 0.0
) -> _Model:
    """The Beta-times-smooth-correction family on the grid ``logit`` with correction knots ``knots`` (equally
    spaced): columns logit p and log(1 - p) (the Beta), with ``bend_sd`` > 0 the bend (the distance below the
    lowest knot, its coefficient c ~ N(0, bend_sd^2)), then the hat functions of the inner knots. The
    correction is held at 0 on the end knots and outside them, so past the knots the Beta's power laws rule,
    bent below them by c."""
    h = knots[1] - knots[0]
    inside = (logit > knots[0]) & (logit < knots[-1])
    pos = np.clip(np.searchsorted(knots, logit, side="right") - 1, 0, len(knots) - 2)
    frac = (logit - knots[pos]) / h
    hats = np.zeros((len(logit), len(knots)))
    rows = np.flatnonzero(inside)
    hats[rows, pos[rows]] = 1 - frac[rows]
    hats[rows, pos[rows] + 1] = frac[rows]
    bend = [np.maximum(knots[0] - logit, 0.0)] if bend_sd > 0 else []
    X = np.column_stack([logit, log_expit(-logit), *bend, hats[:, 1:-1]])
    free = 2 + len(bend)  # columns the smoothing leaves alone
    D2 = np.diff(np.eye(len(knots)), n=2, axis=0)[:, 1:-1]  # second differences of (0, theta, 0)
    S = np.zeros((X.shape[1], X.shape[1]))
    S[free:, free:] = D2.T @ D2
    R = np.zeros_like(S)
    if bend:
        R[2, 2] = bend_sd**-2
    a, b = start_beta  # Beta(a, b) of p is a logit + (a + b) log(1 - p) in logit p
    start = np.append([a, a + b, *[0.0] * len(bend)], np.zeros(len(knots) - 2))
    return _Model(X, S, int(np.linalg.matrix_rank(S)), start, R)


def _knots(scores: Scores) -> np.ndarray:
    """Knots KNOT_SPACING apart from BELOW_SIGHT logit units under 1/k (k: the median number of attempts; None:
    the grid's floor) to ABOVE_TOP over the largest success fraction (at most the grid's top)."""
    assert scores.successes is not None and scores.trials is not None  # counts, checked by _counts
    k = max(float(np.median(scores.trials)), 2.0)
    top = min(float((scores.successes / scores.trials).max()), 1 - 0.5 / k)
    lo = GRID_LOGIT[0] if BELOW_SIGHT is None else float(-np.log(k - 1)) - BELOW_SIGHT
    hi = min(float(np.log(top) - np.log1p(-top)) + ABOVE_TOP, GRID_LOGIT[1])
    return lo + KNOT_SPACING * np.arange(max(int(np.ceil((hi - lo) / KNOT_SPACING)), 3) + 1)


@overload
def _objective(
    theta: np.ndarray, lik: _Likelihood, X: np.ndarray, P: np.ndarray, hessian: Literal[True] = True
) -> tuple[float, np.ndarray, np.ndarray]: ...


@overload
def _objective(theta: np.ndarray, lik: _Likelihood, X: np.ndarray, P: np.ndarray, hessian: Literal[False]) -> float: ...


def _objective(
    theta: np.ndarray, lik: _Likelihood, X: np.ndarray, P: np.ndarray, hessian: bool = True
) -> float | tuple[float, np.ndarray, np.ndarray]:
    """Penalized negative log-likelihood of parameters ``theta`` (P,), with its gradient and Hessian.

    ``X`` (G, P) maps parameters to unnormalized log-masses on the grid, ``P`` (P, P) is the penalty
    (lambda S). The Hessian is the complete-data information less the missing information:
    X' [m (diag w - w w') - diag(c' Pi)] X + (Pi X)' diag(c) (Pi X) + P, with w the grid masses, Pi (D, G) the
    posterior of each pair over the grid and m the number of queries.
    """
    eta = X @ theta
    log_w = eta - logsumexp(eta)
    joint = lik.log_lik + log_w  # (D, G)
    log_f = logsumexp(joint, axis=1)
    value = -lik.count @ log_f + 0.5 * theta @ P @ theta
    if not hessian:
        return float(value)
    post = np.exp(joint - log_f[:, None])  # (D, G)
    w = np.exp(log_w)
    m = lik.count.sum()
    seen = lik.count @ post  # (G,)
    grad = X.T @ (m * w - seen) + P @ theta
    xw = X.T @ w
    A = post @ X  # (D, P)
    H = (X.T * (m * w - seen)) @ X - m * np.outer(xw, xw) + (A.T * lik.count) @ A + P
    return float(value), grad, H


def _newton(
    theta: np.ndarray, lik: _Likelihood, X: np.ndarray, P: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, bool]:
    """Minimize :func:`_objective` from ``theta`` by damped Newton steps with a backtracking line search.

    Where the Hessian is not positive definite a multiple of the identity is added until its Cholesky
    factorization succeeds (Levenberg's damping). Returns (theta, value, Cholesky factor of the Hessian,
    converged); warm starts (the previous smoothing's mode) take a few steps.
    """
    value, grad, H = _objective(theta, lik, X, P)
    for _ in range(MAX_NEWTON):
        chol = _damped_cholesky(H)
        step = -cho_solve((chol, True), grad)
        decrement = -grad @ step  # twice the gain the quadratic model expects
        if decrement < 1e-8:
            return theta, value, chol, True
        t = 1.0
        while t > 1e-10:
            trial = _objective(theta + t * step, lik, X, P, hessian=False)
            if trial <= value - 1e-4 * t * decrement:
                break
            t /= 2
        else:  # rounding hides the descent: converged if what is left is under NEWTON_TOL
            return theta, value, chol, decrement < NEWTON_TOL
        theta = theta + t * step
        value, grad, H = _objective(theta, lik, X, P)
    return theta, value, _damped_cholesky(H), False


def _damped_cholesky(H: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of H + shift I with the smallest shift (0, or 1e-8 * max|diag| doubling) that
    makes it positive definite. Cholesky rather than an eigendecomposition: LAPACK's divide-and-conquer
    eigensolver runs threaded BLAS, which costs milliseconds per call on a busy machine."""
    shift, eye = 0.0, np.eye(len(H))
    while True:
        try:
            return np.linalg.cholesky(H + shift * eye)
        except np.linalg.LinAlgError:
            shift = max(2 * shift, 1e-8 * max(float(np.abs(np.diag(H)).max()), 1.0))


class _Smoothing(NamedTuple):
    """The fit at one penalty weight: its mode, the Hessian there, and its Laplace log evidence."""

    smoothing: float
    theta: np.ndarray  # (P,)
    chol: np.ndarray  # (P, P) lower Cholesky factor of the Hessian there
    log_evidence: float
    edf: float  # effective degrees of freedom: 2 for a Beta, more as the correction loosens
    converged: bool


def _fit_smoothings(lik: _Likelihood, model: _Model, smoothings: Iterable[float]) -> list[_Smoothing]:
    """The mode at every penalty weight, strongest first, each Newton run warm-started from the previous one.

    The log evidence is the Laplace approximation -F(mode) + rank/2 log(lambda) - 1/2 log|H| (terms that do not
    depend on lambda left out, the bend's prior among them), so normalized it is the posterior of lambda under a
    flat prior on log lambda.
    """
    theta = model.start
    fits = []
    for lam in sorted(smoothings, reverse=True):
        theta, value, chol, converged = _newton(theta, lik, model.X, model.penalty(lam))
        edf = float(model.X.shape[1] - lam * np.trace(cho_solve((chol, True), model.S)))
        evidence = -value + 0.5 * model.rank * np.log(lam) - np.log(np.diag(chol)).sum()
        fits.append(_Smoothing(float(lam), theta, chol, float(evidence), edf, converged))
    return fits


def _log_posterior(theta: np.ndarray, lik: _Likelihood, X: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log posterior (up to a constant) and its gradient at each row of ``theta`` (C, P); ``P`` (C, P, P) holds
    each row's penalty. The mixture likelihoods and the posterior over the grid are matrix products of
    likelihoods and masses each scaled by its largest entry: a term 1e-308 below its row's largest drops out,
    and a row that loses every term gets -inf (a rejected move), never a wrong finite value.

    This is :func:`_objective` negated, batched and without the Hessian. The sampler calls it about 650 times
    a fit, and the scaled products are about 20 times faster than log-space sums (2 ms against 41 ms for 40
    chains on 500 queries, 2-core Xeon). Newton keeps the log-space form because it starts far from the mode,
    where a -inf would stop it rather than reject a move.
    tests/test_best_of_n.py checks that the two agree."""
    eta = theta @ X.T
    log_w = eta - logsumexp(eta, axis=1, keepdims=True)  # (C, G)
    top_w = log_w.max(axis=1, keepdims=True)
    w_scaled = np.exp(log_w - top_w)
    f_scaled = w_scaled @ lik.scaled.T  # (C, D): each pair's likelihood, scaled
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_f = np.log(f_scaled) + top_w + lik.top
        seen = w_scaled * ((lik.count / f_scaled) @ lik.scaled)  # (C, G): expected queries at each grid point
        penalty = np.einsum("cpq,cq->cp", P, theta)
        value = log_f @ lik.count - 0.5 * np.einsum("cp,cp->c", theta, penalty)
        grad = (seen - lik.count.sum() * np.exp(log_w)) @ X - penalty
    bad = ~np.isfinite(value) | ~np.isfinite(grad).all(axis=1)
    value[bad] = -np.inf
    grad[bad] = 0.0
    return value, grad


def _smoothing_weights(fits: list[_Smoothing]) -> np.ndarray:
    """The penalty weights' posterior: their Laplace evidences, normalized."""
    log_ev = np.array([f.log_evidence for f in fits])
    weights: np.ndarray = np.exp(log_ev - logsumexp(log_ev))
    return weights


def _draw(fits: list[_Smoothing], lik: _Likelihood, model: _Model, n_draws: int, seed: int) -> tuple[np.ndarray, float]:
    """Posterior draws of the grid's log-masses, (n_draws, G), by Hamiltonian Monte Carlo, and the mean
    acceptance rate.

    :data:`CHAINS` chains run side by side. Each is given a penalty weight drawn by its Laplace evidence, starts
    near that weight's mode, and uses the Hessian there as its mass matrix, so every direction moves on its own
    scale. Step sizes adapt during :data:`WARMUP` iterations towards acceptance 0.75; the draws after it are kept.
    The Laplace approximation N(mode, H^-1) itself is not the posterior: where the grid holds little mass it
    lets the log-masses swing far wider than the counts allow (draws with fewer queries breaking at N = 10^4
    than already broke in 100 attempts).
    """
    rng = np.random.default_rng(seed)
    which = rng.choice(len(fits), size=CHAINS, p=_smoothing_weights(fits))
    penalty = np.stack([model.penalty(fits[i].smoothing) for i in which])
    chol = np.stack([fits[i].chol for i in which])  # mass matrix H = L L'
    eye = np.eye(chol.shape[1])
    h_inv = np.stack([cho_solve((c, True), eye) for c in chol])
    theta = np.stack([fits[i].theta for i in which])
    theta += 0.5 * np.einsum("cpq,cq->cp", h_inv @ chol, rng.standard_normal(theta.shape))  # 0.5 L^-T z
    value, grad = _log_posterior(theta, lik, model.X, penalty)
    step = np.full(CHAINS, 0.3)
    kept, accepted = [], []
    for it in range(WARMUP + -(-n_draws // CHAINS)):
        r0 = np.einsum("cpq,cq->cp", chol, rng.standard_normal(theta.shape))  # momentum ~ N(0, H)
        th, r = theta.copy(), r0 + 0.5 * step[:, None] * grad
        for leap in range(LEAPFROG):
            th = th + step[:, None] * np.einsum("cpq,cq->cp", h_inv, r)
            new_value, new_grad = _log_posterior(th, lik, model.X, penalty)
            r = r + (0.5 if leap == LEAPFROG - 1 else 1.0) * step[:, None] * new_grad
        kinetic = [0.5 * np.einsum("cp,cpq,cq->c", v, h_inv, v) for v in (r0, r)]
        log_accept = np.nan_to_num(new_value - kinetic[1] - value + kinetic[0], nan=-np.inf)
        accept = np.log(rng.random(CHAINS)) < log_accept
        theta[accept], value[accept], grad[accept] = th[accept], new_value[accept], new_grad[accept]
        rate = np.exp(np.minimum(log_accept, 0.0))
        if it < WARMUP:
            step *= np.exp(0.5 * (rate - 0.75))
        else:
            kept.append(theta.copy())
            accepted.append(rate.mean())
    eta = np.concatenate(kept)[:n_draws] @ model.X.T
    return eta - logsumexp(eta, axis=1, keepdims=True), float(np.mean(accepted))


@dataclass
class BestOfNFit:
    """A posterior over the distribution of per-query p, with forecasts of best-of-N attack success.

    Made by :func:`fit_best_of_n`. Every forecast takes a scalar or an array and returns the same shape.

    Attributes
    ----------
    scores : Scores
        The counts it was fitted to.
    distribution : PDistribution
        The modes' distributions of p mixed by the lambdas' weights (one row): every point forecast reads it.
    posterior : PDistribution
        ``n_draws`` posterior draws of the distribution of p under the bent model (one row each): every
        interval reads them.
    smoothings, weights : ndarray
        The penalty weights averaged over, and their posterior weights (in the point forecast's model).
    edf : float
        Effective degrees of freedom of the correction to a Beta, posterior-averaged (2: a plain Beta).
    acceptance : float
        Mean acceptance rate of the sampler behind ``posterior`` (it adapts towards 0.75; far lower means
        the draws explored poorly).
    n_draws, seed : int
        Posterior draws behind the intervals, and their random seed.
    bend_sd : float
        Prior sd of the bend below the knots in the posterior behind the intervals (0: no bend).
    """

    scores: Scores
    distribution: PDistribution
    posterior: PDistribution = field(repr=False)
    smoothings: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    edf: float = 2.0
    acceptance: float = 1.0
    n_draws: int = 1000
    seed: int = 0
    bend_sd: float = BEND_SD

    def attack_success_rate(self, attempts: ArrayLike) -> Shaped:
        """ASR@N: the expected share of queries that show the behavior at least once in N attempts."""
        arr = _at_least_one(attempts)
        return _shaped(self.distribution.asr(arr)[0], attempts)

    def any_success(self, n_queries: ArrayLike, attempts: ArrayLike) -> Shaped:
        """P(at least one of ``n_queries`` deployment queries, each tried ``attempts`` times, shows the behavior).

        That is 1 - E_p[(1 - p)^N]^n, computed as -expm1(n log E[(1 - p)^N]). It assumes the deployment
        queries are drawn independently from the distribution the evaluation queries came from, that the
        attempts at one query are independent given its p, and that deployment decodes as the evaluation
        did. ``n_queries`` and ``attempts`` broadcast against each other.
        """
        return self._any(self.distribution, n_queries, attempts)[0]

    @staticmethod
    def _any(dist: PDistribution, n_queries: ArrayLike, attempts: ArrayLike) -> list[float | np.ndarray]:
        """:meth:`any_success` for every row of ``dist``: a list, one value (float or array) per row."""
        _at_least_one(n_queries, "n_queries")
        _at_least_one(attempts, "attempts")
        n, N = np.broadcast_arrays(np.asarray(n_queries, dtype=float), np.asarray(attempts, dtype=float))
        out = -np.expm1(n.ravel() * dist.log_none(N.ravel()))  # (R, size)
        return [float(row[0]) if n.shape == () else row.reshape(n.shape) for row in out]

    def budget_for(self, target_asr: ArrayLike) -> Shaped:
        """Attempts per query N at which ASR@N reaches ``target_asr``; inf where the fit never reaches it.

        ASR@N rises with N towards 1 - (mass at the grid's floor, p ~ 1e-12); a target above that has no
        finite budget.
        """
        target = np.atleast_1d(np.asarray(target_asr, dtype=float)).ravel()
        if np.any(np.isnan(target) | (target <= 0) | (target >= 1)):
            raise InputError(f"target_asr must lie strictly between 0 and 1, got {target_asr!r}")
        lo, hi = np.zeros_like(target), np.full_like(target, 40.0)  # log10 N between 1 and 1e40
        for _ in range(60):  # bisection on log10 N; ASR@N is increasing in N
            mid = (lo + hi) / 2
            below = self.distribution.asr(10.0**mid)[0] < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        reach = self.distribution.asr(np.array([10.0**40]))[0, 0] >= target
        return _shaped(np.where(reach, 10.0**hi, np.inf), target_asr)

    def interval(
        self, attempts: ArrayLike, level: float = 0.9, *, n_queries: ArrayLike | None = None
    ) -> ConfidenceInterval:
        """Equal-tailed posterior ``level`` interval of ASR@N, as a named (low, high) pair of the input's shape.

        With ``n_queries`` it is the interval of :meth:`any_success` at (n_queries, attempts) instead, with
        the two broadcast against each other.
        """
        level = check_quantile(level, "level")
        alpha = (1 - level) / 2
        if n_queries is None:
            values = self.posterior.asr(_at_least_one(attempts))
            low, high = (_shaped(v, attempts) for v in np.quantile(values, [alpha, 1 - alpha], axis=0))
        else:
            values = np.asarray(self._any(self.posterior, n_queries, attempts))
            low, high = (v if v.ndim else float(v) for v in np.quantile(values, [alpha, 1 - alpha], axis=0))
        return ConfidenceInterval(low, high)

    def counts_only_range(self, attempts: ArrayLike, level: float = 0.9) -> ConfidenceInterval:
        """The range of ASR@N that the counts allow with no shape assumed for the distribution of p.

        Every ASR@N of a distribution of p on the fit's grid (any shape) whose log-likelihood is within
        chi2_1(level) / 2 of the largest any distribution reaches: the profile-likelihood ``level`` confidence
        interval (:func:`rarecast.forecasting.profile_range.profile_range`). :meth:`interval` is narrower because
        the model assumes how the mass spreads below p ~ 1/k; this range shows how much of it the counts decide.
        Past about 10 times the attempts per query its high end nears 1 (docs/best-of-n-identification.md).
        On 500 queries it took 0.7 s to 2.2 s for one N and 1.4 s to 3.9 s for two (2-core Xeon).
        """
        level = check_quantile(level, "level")
        arr = _at_least_one(attempts)
        lik = _Likelihood(self.scores, self.distribution.logit)
        values = -np.expm1(arr[:, None] * log_expit(-self.distribution.logit)[None, :])
        low, high, _ = profile_range(lik.scaled, lik.count, values, level)
        return ConfidenceInterval(_shaped(low, attempts), _shaped(high, attempts))

    def summary(self, attempts: ArrayLike, level: float = 0.9) -> list[dict[str, float]]:
        """One row per N: ``{"attempts", "forecast", "low", "high", "counts_low", "counts_high", "level"}`` (the
        interval, then :meth:`counts_only_range`), as plain data for JSON."""
        arr = _at_least_one(attempts)
        point = np.atleast_1d(self.attack_success_rate(arr))
        low, high = (np.atleast_1d(v) for v in self.interval(arr, level))
        counts_low, counts_high = (np.atleast_1d(v) for v in self.counts_only_range(arr, level))
        return [
            {
                "attempts": float(n),
                "forecast": float(f),
                "low": float(lo),
                "high": float(hi),
                "counts_low": float(clo),
                "counts_high": float(chi),
                "level": level,
            }
            for n, f, lo, hi, clo, chi in zip(arr, point, low, high, counts_low, counts_high)
        ]


def fit_best_of_n(
    successes: Scores | ArrayLike,
    trials: ArrayLike | None = None,
    *,
    n_draws: int = 1000,
    seed: int = 0,
    bend_sd: float = BEND_SD,
) -> BestOfNFit:
    """Fit a posterior over the distribution of per-query p to sampled counts, for best-of-N forecasts.

    Parameters
    ----------
    successes : array_like of int, or Scores
        Successes per query; or a counts :class:`~rarecast.Scores` (then leave ``trials`` out).
    trials : int or array_like of int
        Attempts per query: one number for every query, or one per query.
    n_draws : int, default 1000
        Posterior draws behind :meth:`BestOfNFit.interval`.
    seed : int, default 0
        Seed of the draws.
    bend_sd : float, default :data:`BEND_SD`
        Prior sd of the bend below the knots in the intervals' posterior; 0 takes the Beta's power law there
        as known (narrower intervals, which the benchmark finds too narrow where queries never break).

    Returns
    -------
    BestOfNFit

    Raises
    ------
    InputError
        Counts that are not whole numbers with 0 <= successes <= trials, fewer than :data:`MIN_QUERIES`
        queries, or a bad setting.
    ForecastError
        No query showed the behavior even once, so the counts say nothing about the scale of p; or the fit
        did not converge.

    Examples
    --------
    >>> import rarecast as rc
    >>> fit = rc.fit_best_of_n([0, 0, 1, 3, 0, 12, 0, 2] * 5, 100)
    >>> bool(fit.attack_success_rate(100) < fit.attack_success_rate(1e4))
    True
    >>> low, high = fit.interval(1e4)
    >>> bool(low < fit.attack_success_rate(1e4) < high)
    True
    """
    scores = _counts(successes, trials)
    if scores.m < MIN_QUERIES:
        raise InputError(f"{scores.m} queries are too few for a best-of-N fit; score at least {MIN_QUERIES}")
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < MIN_DRAWS:
        raise InputError(f"n_draws must be a whole number >= {MIN_DRAWS}, got {n_draws!r}")
    if isinstance(bend_sd, bool) or not isinstance(bend_sd, (int, float)) or not 0 <= bend_sd < np.inf:
        raise InputError(f"bend_sd must be a finite number >= 0, got {bend_sd!r}")
    assert scores.successes is not None  # counts, checked by _counts
    if not scores.successes.any():
        raise ForecastError(
            "no query showed the behavior in any attempt, so the counts say nothing about how "
            "likely it is; try more attempts per query or more queries"
        )
    logit = np.linspace(*GRID_LOGIT, GRID_SIZE)
    lik = _Likelihood(scores, logit)
    knots, start = _knots(scores), _moment_beta(scores)
    model = _model(logit, knots, start)
    fits = _fit_smoothings(lik, model, SMOOTHINGS)
    bent, bent_fits = model, fits
    if bend_sd > 0:
        bent = _model(logit, knots, start, bend_sd)
        bent_fits = _fit_smoothings(lik, bent, SMOOTHINGS)
    if not all(f.converged for f in fits + bent_fits):
        raise ForecastError("the best-of-N fit did not converge; check the counts")
    log_w, acceptance = _draw(bent_fits, lik, bent, int(n_draws), seed)
    weights = _smoothing_weights(fits)
    eta = np.array([f.theta for f in fits]) @ model.X.T  # the modes, mixed by their weights
    with np.errstate(divide="ignore"):  # a weight that underflows to 0 drops out as log 0 = -inf
        point = logsumexp(eta - logsumexp(eta, axis=1, keepdims=True) + np.log(weights)[:, None], axis=0)
    return BestOfNFit(
        scores,
        PDistribution(logit, point[None, :]),
        PDistribution(logit, log_w),
        np.array([f.smoothing for f in fits]),
        weights,
        float(weights @ [f.edf for f in fits]),
        acceptance,
        int(n_draws),
        seed,
        float(bend_sd),
    )


def best_of_n_result(fit: BestOfNFit, attempts: ArrayLike, level: float = 0.9) -> dict[str, Any]:
    """What the CLI prints and writes to JSON: the fit's effective degrees of freedom, the number of queries,
    the bend's prior sd, one :meth:`BestOfNFit.summary` row per N and :data:`INTERVAL_NOTE`."""
    return {
        "edf": fit.edf,
        "m": fit.scores.m,
        "bend_sd": fit.bend_sd,
        "forecasts": fit.summary(attempts, level),
        "note": INTERVAL_NOTE,
    }


__all__ = ["INTERVAL_NOTE", "BestOfNFit", "PDistribution", "best_of_n_result", "fit_best_of_n"]
