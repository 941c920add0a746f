"""The public contract (docs/python-api.md): fit_tail, the three risks, intervals, Scores and ForecastError."""

import numpy as np
import pytest

import rarecast as rc
from rarecast.evaluation.synthetic import FAMILIES
from rarecast.forecasting.tail import methods


@pytest.fixture(scope="module")
def logp():
    return FAMILIES["lognormal"].sample(np.random.default_rng(0), 600).logp


@pytest.mark.parametrize("method", [m for m in methods() if m != "binomial"])
def test_every_exact_method_answers_all_three_risks_with_intervals(logp, method):
    fit = rc.fit_tail(logp, method=method, n_draws=200)
    for risk, x in [("worst_query_risk", 1e5), ("behavior_frequency", 0.01), ("aggregate_risk", 1e5)]:
        point = fit.forecast(risk, x)
        low, high = fit.interval(risk, x, level=0.9)
        assert isinstance(point, float) and 0.0 <= low <= high <= 1.0 and 0.0 <= point <= 1.0
    arr = fit.worst_query_risk(np.array([[1e3, 1e4], [1e5, 1e6]]))
    assert arr.shape == (2, 2)
    assert np.all(np.diff(arr.ravel()) >= 0)  # worst-query risk grows with n


def test_default_method_is_the_documented_one(logp):
    from rarecast.forecasting.tail import DEFAULT_EXACT

    assert rc.fit_tail(logp).method == DEFAULT_EXACT
    counts = rc.Scores.from_counts(np.r_[np.arange(1, 40), np.zeros(300)], np.full(339, 100))
    assert rc.fit_tail(counts).method == "binomial"


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (np.array([-1.0, np.nan] + [-2.0] * 50), {}, "NaN"),
        (np.array([0.5] + [-2.0] * 50), {}, "> 0"),
        (np.array([]), {}, "needs"),
        (np.log(np.linspace(0.01, 0.02, 8)), {}, "needs more than"),
        (np.full(100, -3.0), {"method": "exponential"}, "does not decay"),
        (np.log(np.linspace(0.01, 0.02, 50)), {"method": "nope"}, "unknown method"),
        (np.log(np.linspace(0.01, 0.02, 50)), {"method": "gumbel-ols", "k": 1}, "k must be"),
        (np.log(np.linspace(0.01, 0.02, 50)), {"method": "gpd-bayes", "prior_sd": 0}, "prior_sd must be a positive"),
        (np.log(np.linspace(0.01, 0.02, 50)), {"method": "binomial", "scale_sd": -1.0}, "scale_sd must be a positive"),
        (np.log(np.linspace(0.01, 0.02, 50)), {"method": "binomial", "scale_median": "x"}, "scale_median must be"),
        (np.log(np.linspace(0.01, 0.02, 50)), {"method": "binomial", "shape_sd": -0.1}, "shape_sd must be a non-neg"),
        (np.log(np.linspace(0.01, 0.02, 50)), {"method": "binomial", "shape_sd": float("inf")}, "shape_sd must be fin"),
    ],
)
def test_bad_input_raises_forecast_error(data, kwargs, message):
    with pytest.raises(rc.ForecastError, match=message) as err:
        rc.fit_tail(data, **kwargs)
    assert isinstance(err.value, ValueError)


def test_bad_forecast_arguments(logp):
    fit = rc.fit_tail(logp)
    with pytest.raises(rc.ForecastError, match="n must be"):
        fit.worst_query_risk(0.5)
    with pytest.raises(rc.ForecastError, match="tau must"):
        fit.behavior_frequency(1.5)
    with pytest.raises(rc.ForecastError, match="level"):
        fit.interval("aggregate_risk", 1e4, level=1.2)


def test_top_gap_pvalue_is_uniform_on_an_exponential_tail_and_flags_a_planted_rare_mode():
    from scipy import stats

    from rarecast.forecasting.diagnostics import top_gap_pvalue

    rng = np.random.default_rng(3)
    k = 10
    tops = -np.sort(-rng.exponential(size=(2000, 200)), axis=1)[:, : k + 1]
    pvalues = np.array([top_gap_pvalue(t) for t in tops])
    # exact under the null: the top normalized spacing over the mean of the rest is F(2, 2(k - 1))
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    assert 0.005 <= np.mean(pvalues < 0.01) <= 0.02  # 2000 draws: the standard error of 1% is 0.22 points
    planted = tops.copy()
    planted[:, 0] += 12.0  # one query e^12 = 160,000 times likelier in odds than the tail predicts
    assert np.mean([top_gap_pvalue(t) < 0.01 for t in planted]) > 0.95
    assert top_gap_pvalue(np.r_[3.0, 2.0, 2.0, 2.0]) is None  # tied scores below the top leave no test
    psi = np.r_[12.0, rng.normal(-4, 0.5, 500)]  # one query far above a sample: the fit's diagnostics warn
    d = rc.fit_tail(-np.exp(-psi)).diagnostics()
    assert d.top_gap_pvalue < 0.01 and any("rare mode" in w for w in d.warnings)


def test_diagnostics_flag_ties_and_heavy_tails():
    rng = np.random.default_rng(0)
    psi = np.r_[-1.0, -1.2, np.full(4, -1.5), rng.normal(-4, 0.3, 500)]  # rounded scores tie in the top
    d = rc.fit_tail(-np.exp(-psi), method="gumbel-ols-digamma").diagnostics()
    assert d.top_ties == 3 and any("ties" in w for w in d.warnings)
    with pytest.raises(rc.ForecastError, match="does not decay"):  # an all-tied top has no slope at all
        rc.fit_tail(-np.exp(-np.r_[np.full(12, -1.0), psi[6:]]), method="gumbel-ols")
    from scipy import stats

    heavy = -3 + stats.genpareto.rvs(0.6, scale=0.05, size=3000, random_state=rng)
    d = rc.fit_tail(-np.exp(-heavy)).diagnostics()
    assert d.shape_test_pvalue < 0.05 and d.stability_over_k
