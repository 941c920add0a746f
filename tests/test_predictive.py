"""The predictive forecasts: quantiles of the deployment maximum mixed over a fit's draws, and quantile=."""

import numpy as np
import pytest
from scipy import stats

import rarecast as rc
from rarecast.evaluation.synthetic import FAMILIES
from rarecast.forecasting.risks import max_quantile_psi
from rarecast.forecasting.tail import TailModel

RISKS = [("worst_query_risk", 1e5), ("behavior_frequency", 0.5), ("aggregate_risk", 1e5)]


def _three_tails() -> TailModel:
    """Three replicates with known GPD tails (bounded, exponential, heavy) above a body of 20 equal atoms."""
    zeta, u = np.array([0.1, 0.15, 0.2]), np.array([-1.0, -0.8, -1.2])
    atoms = np.stack([np.linspace(t - 0.05, t - 3.0, 20) for t in u])
    weights = np.repeat(((1 - zeta) / 20)[:, None], 20, axis=1)
    return TailModel(atoms, weights, u, zeta, np.array([0.3, 0.5, 0.4]), np.array([-0.1, 0.0, 0.25]))


@pytest.fixture(scope="module")
def fit():
    return rc.fit_tail(FAMILIES["exponential"].sample(np.random.default_rng(0), 1000))


def test_max_quantile_matches_monte_carlo_of_the_mixed_deployment():
    model, n, q = _three_tails(), 50, np.array([0.05, 0.5, 0.95])
    x = max_quantile_psi(model, np.full(3, n), q)
    # Exactly: each replicate's maximum has cdf F_r(x)^n, and the mixture is their mean (scipy's c is our xi).
    f_r = 1 - model.tail_mass[:, None] * stats.genpareto.sf(
        x[None, :] - model.threshold[:, None], model.xi, scale=model.sigma
    )
    assert np.allclose(np.mean(f_r**n, axis=0), q, atol=1e-9)

    # By simulation: per deployment pick a replicate, then n queries from it (tail or body), and take the max.
    rng, runs = np.random.default_rng(2024), 200_000
    r = rng.integers(3, size=runs)
    in_tail = rng.random((runs, n)) < model.tail_mass[r, None]
    excess = stats.genpareto.rvs(model.xi[r], scale=model.sigma[r], size=(runs, n), random_state=rng)
    body = model.atoms[r[:, None], rng.integers(20, size=(runs, n))]
    worst = np.where(in_tail, model.threshold[r, None] + excess, body).max(axis=1)
    # The simulated fraction below each fixed x is binomial: 4 standard errors (0.002 at q = 0.05 and 0.95,
    # 0.0045 at the median) let a correct implementation fail at under 1e-4 per check whatever the seed.
    below = np.mean(worst[:, None] <= x[None, :], axis=0)
    assert np.all(np.abs(below - q) < 4 * np.sqrt(q * (1 - q) / runs)), below


def test_max_quantiles_rise_with_q_and_n():
    n, q = np.meshgrid([10.0, 1e3, 1e5, 1e7], [0.05, 0.25, 0.5, 0.75, 0.95], indexing="ij")
    x = max_quantile_psi(_three_tails(), n.ravel(), q.ravel()).reshape(n.shape)  # it takes 1-D arrays
    assert np.all(np.diff(x, axis=0) > 0) and np.all(np.diff(x, axis=1) > 0)


def test_forecast_quantiles_rise_with_q_and_n(fit):
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    n = np.array([1e3, 1e4, 1e5, 1e6])
    table = np.array([fit.worst_query_risk(n, quantile=level) for level in q])
    # p saturates at 1 far out, so rising means never falling
    assert np.all(np.diff(table, axis=0) >= 0) and np.all(np.diff(table, axis=1) >= 0)


@pytest.mark.parametrize("risk, x", [RISKS[0], RISKS[2]])
def test_default_forecast_is_the_predictive_median(fit, risk, x):
    assert fit.forecast(risk, x) == fit.forecast(risk, x, quantile=0.5)
    assert fit.forecast(risk, x, quantile=0.75) >= fit.forecast(risk, x)


def test_default_behavior_frequency_is_the_predictive_mean(fit):
    """The chance that one fresh query exceeds tau under the fit's draws, mean_r S_r(tau), recomputed from each
    draw's threshold, tail mass and generalized Pareto tail with scipy (tau lies in every draw's tail)."""
    tau = np.array([fit.worst_query_risk(1e5), fit.worst_query_risk(1e7)])
    draws = fit.draws()
    x = -np.log(-np.log(tau))  # psi of tau
    assert np.all(x[:, None] > draws.threshold[None, :]) and draws.xi.shape == (draws.replicates, 1)
    sf = draws.tail_mass[None, :] * stats.genpareto.sf(
        x[:, None] - draws.threshold[None, :], draws.xi[None, :, 0], scale=draws.sigma[None, :, 0]
    )
    assert np.allclose(fit.behavior_frequency(tau), sf.mean(axis=1), rtol=1e-9, atol=0)
    # a median over the draws would be another number here: the draws disagree about the tail
    assert not np.allclose(fit.behavior_frequency(tau), fit.behavior_frequency(tau, quantile=0.5), rtol=0.05)


@pytest.mark.parametrize("method", ["gpd-bayes", "gumbel-ols"])
@pytest.mark.parametrize("risk, x", RISKS)
def test_interval_ends_are_the_matching_quantiles(method, risk, x):
    fit = rc.fit_tail(FAMILIES["exponential"].sample(np.random.default_rng(1), 1000), method=method, n_draws=200)
    low, high = fit.interval(risk, x, level=0.8)
    # the interval's ends are computed at (1 - 0.8) / 2, one rounding away from 0.1
    assert low == pytest.approx(fit.forecast(risk, x, quantile=0.1), rel=1e-9)
    assert high == pytest.approx(fit.forecast(risk, x, quantile=0.9), rel=1e-9)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, True, "a", float("nan"), None])
def test_a_bad_quantile_or_level_is_refused(fit, bad):
    for risk, x in RISKS:
        if bad is not None:  # None is the estimator's own rule, valid for quantile but not for a level
            with pytest.raises(rc.ForecastError, match="quantile must lie strictly between 0 and 1"):
                fit.forecast(risk, x, quantile=bad)
        with pytest.raises(rc.ForecastError, match="level must lie strictly between 0 and 1"):
            fit.interval(risk, x, level=bad)


def test_worst_query_forecast_and_behavior_frequency_agree():
    """Both come from one predictive distribution. The worst-query forecast x is its median deployment
    maximum, mean_r (1 - S_r(x))^n = 1/2; the behavior frequency at x is mean_r S_r(x). As (1 - s)^n is
    convex in s, Jensen's inequality gives n mean_r S_r(x) >= n (1 - 2^(-1/n)) ~ ln 2 = 0.69 queries above x,
    with equality only when the draws agree; the excess measures how much they disagree about the tail, which
    grows as x moves out. Checked on 12 fits at m = 1000: the bound, and the excess rising with n."""
    fam, n = FAMILIES["exponential"], np.array([1e4, 1e5, 1e6])
    counts = []
    for rep in range(12):
        fit = rc.fit_tail(fam.sample(np.random.default_rng([3, rep]), 1000))
        counts.append(n * fit.behavior_frequency(fit.worst_query_risk(n)))
    counts = np.array(counts)
    assert np.all(counts >= -n * np.expm1(-np.log(2) / n) * (1 - 1e-6)), counts
    assert np.all(np.diff(counts, axis=1) > 0), counts
