"""The profile-likelihood range of a mean over the distribution of p, against exact and independent answers."""

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import gammaln

import rarecast as rc
from rarecast.forecasting.profile_range import END_TOL, profile_range


def binomial_lr_interval(successes: int, trials: int, level: float) -> tuple[float, float]:
    """The likelihood-ratio interval of a binomial proportion, by root-finding on its log-likelihood."""

    def loglik(t):
        return successes * np.log(t) + (trials - successes) * np.log1p(-t)

    top, drop = successes / trials, stats.chi2.ppf(level, 1) / 2
    excess = lambda t: loglik(t) - loglik(top) + drop  # noqa: E731
    return optimize.brentq(excess, 1e-12, top), optimize.brentq(excess, top, 1 - 1e-12)


def test_with_one_attempt_per_query_the_range_of_the_mean_is_the_binomial_interval():
    # one attempt per query: the counts' likelihood depends on the distribution of p only through its mean, so
    # the profile range of E[p] is exactly the likelihood-ratio interval of the share of successes
    p = 1 / (1 + np.exp(-np.linspace(-8, 3, 120)))
    lik = np.array([1 - p, p])
    for successes, trials in ((40, 500), (7, 300)):
        low, high, slack = profile_range(lik, np.array([trials - successes, successes]), p[None, :], 0.9)
        exact = binomial_lr_interval(successes, trials, 0.9)
        assert low[0] <= exact[0] + 1e-7 and high[0] >= exact[1] - 1e-7  # never inside the exact ends
        assert exact[0] - low[0] < 2 * END_TOL and high[0] - exact[1] < 2 * END_TOL
        assert slack[0] < END_TOL


def independent_ends(lik, count, values, level):
    """The same two convex problems by SLSQP on a tiny grid, from several starts (an independent solver)."""
    share, G = count / count.sum(), lik.shape[1]
    g = lambda w: share @ np.log(lik @ w)  # noqa: E731
    top = max(
        -optimize.minimize(
            lambda w: -g(w),
            w0,
            bounds=[(1e-12, 1)] * G,
            method="SLSQP",
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
            options={"ftol": 1e-14},
        ).fun
        for w0 in np.random.default_rng(0).dirichlet(np.ones(G), 5)
    )
    floor = top - stats.chi2.ppf(level, 1) / 2 / count.sum()
    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1}, {"type": "ineq", "fun": lambda w: g(w) - floor}]
    ends = []
    for sign in (1.0, -1.0):
        runs = [
            optimize.minimize(
                lambda w, sign=sign: sign * (values @ w),
                w0,
                bounds=[(1e-12, 1)] * G,
                method="SLSQP",
                constraints=cons,
                options={"ftol": 1e-12, "maxiter": 500},
            )
            for w0 in np.random.default_rng(1).dirichlet(np.ones(G), 8)
        ]
        ends.append(sign * min(r.fun for r in runs if r.success and g(r.x) >= floor - 1e-9))
    return ends[0], ends[1]


def test_the_ends_match_an_independent_solver_on_a_small_case():
    # five grid points of p, three attempts per query, a count table with every outcome
    p = np.array([1e-4, 0.02, 0.1, 0.3, 0.7])
    s = np.arange(4)[:, None]
    lik = np.exp(gammaln(4) - gammaln(s + 1) - gammaln(4 - s) + s * np.log(p) + (3 - s) * np.log1p(-p))
    count = np.array([120.0, 30.0, 12.0, 6.0])
    values = -np.expm1(np.array([[10.0], [100.0]]) * np.log1p(-p))  # ASR@10 and ASR@100
    low, high, _ = profile_range(lik, count, values, 0.9)
    for i in range(2):
        lo, hi = independent_ends(lik, count, values[i], 0.9)
        assert low[i] <= lo + 1e-6 and high[i] >= hi - 1e-6
        assert lo - low[i] < 1e-3 and high[i] - hi < 1e-3


def test_the_counts_decide_asr_at_k_and_not_far_beyond():
    # at N = k the share of queries that broke is observed, so the range is the binomial interval of that share;
    # at 100 k the counts cannot rule out that every unbroken query sits just above p ~ 1/N
    rng = np.random.default_rng(3)
    s = rng.binomial(100, rng.beta(0.3, 30, 500))
    fit = rc.fit_best_of_n(s, 100, n_draws=100)
    low, high = fit.counts_only_range(np.array([100.0, 1e4]))
    exact = binomial_lr_interval(int((s > 0).sum()), len(s), 0.9)
    assert abs(low[0] - exact[0]) < 0.01 and abs(high[0] - exact[1]) < 0.01
    assert high[1] > 0.99 and low[1] < fit.attack_success_rate(1e4) < high[1]
    band = fit.interval(1e4)
    assert high[1] - low[1] > band.high - band.low  # the model's assumption narrows it
    assert isinstance(fit.counts_only_range(1e3).low, float)
    with pytest.raises(rc.ForecastError, match="level"):  # as fit.interval
        fit.counts_only_range(1e3, level=1.0)


@pytest.mark.slow
def test_the_range_covers_the_exact_asr_over_seeds():
    # Beta-distributed p, 300 queries of 100 attempts: the 90% range holds the exact ASR@1e3 in at least 17 of
    # 20 repetitions, and is no [0, 1]: at N = 1e3 it is well under 0.6 wide
    a, b, N = 0.4, 30.0, 1e3
    truth = -np.expm1(gammaln(a + b) - gammaln(a + b + N) + gammaln(b + N) - gammaln(b))
    held, widths = 0, []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        fit = rc.fit_best_of_n(rng.binomial(100, rng.beta(a, b, 300)), 100, n_draws=100)
        low, high = fit.counts_only_range(N)
        held += low <= truth <= high
        widths.append(high - low)
    assert held >= 17
    assert np.median(widths) < 0.6
