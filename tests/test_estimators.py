"""Exact-answer checks of each estimator against quantities computed independently here."""

import inspect
import json
from math import comb, log

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import digamma

import rarecast as rc
from rarecast.forecasting.tail import make_estimator, methods
from rarecast.forecasting.tail.binomial import BinomialPOT
from rarecast.forecasting.tail.gpd import gpd_profile, shape_test_pvalue
from rarecast.forecasting.tail.gpd_bayes import BayesianGPD, gpd_posterior
from rarecast.forecasting.tail.lognormal import expected_max_normal
from rarecast.scores import logp_from_psi, p_from_psi


def _scores_with_top(top_psi: np.ndarray, m: int, rng) -> np.ndarray:
    """logp whose k largest psi are exactly top_psi and the rest lie well below."""
    rest = top_psi.min() - 1.0 - rng.uniform(0, 2, m - len(top_psi))
    return logp_from_psi(np.concatenate([top_psi, rest]))


@pytest.mark.parametrize("positions", ["j/m", "digamma"])
def test_gumbel_ols_solves_the_line_exactly(positions):
    m, a, b = 500, -3.0, 2.0
    j = np.arange(1, 11)
    y = np.log(j / m) if positions == "j/m" else digamma(j) - digamma(m + 1)
    top = (y - b) / a  # points exactly on log S = a psi + b
    fit = rc.fit_tail(_scores_with_top(top, m, np.random.default_rng(0)), method="gumbel-ols", positions=positions)
    n = np.array([1e4, 1e7])
    expected_psi = -(np.log(n) + b) / a  # where the line meets log(1/n)
    assert np.allclose(fit.worst_query_risk(n), p_from_psi(expected_psi), rtol=1e-10)
    # behavior frequency beyond the observed scores follows the line; inside, the empirical fraction
    far = expected_psi[1]
    assert fit.behavior_frequency(np.exp(-np.exp(-far))) == pytest.approx(np.exp(a * far + b), rel=1e-9)
    inside = (top[2] + top[3]) / 2  # between the 3rd and 4th largest: 3 of m above
    assert fit.behavior_frequency(np.exp(-np.exp(-inside))) == pytest.approx(3 / m)


def test_expected_max_of_normals_matches_closed_forms_and_simulation():
    assert expected_max_normal(1) == pytest.approx(0.0, abs=1e-9)
    assert expected_max_normal(2) == pytest.approx(1 / np.sqrt(np.pi), abs=1e-9)
    assert expected_max_normal(3) == pytest.approx(1.5 / np.sqrt(np.pi), abs=1e-9)
    draws = np.random.default_rng(0).standard_normal((4000, 1000)).max(axis=1)
    se = draws.std() / np.sqrt(len(draws))
    assert abs(expected_max_normal(1000) - draws.mean()) < 4 * se


def test_lognormal_fit_forecasts_expected_maximum():
    rng = np.random.default_rng(3)
    psi = rng.normal(-3.0, 0.5, 400)
    fit = rc.fit_tail(logp_from_psi(psi), method="lognormal")
    expected = psi.mean() + psi.std(ddof=1) * expected_max_normal(1e5)
    assert fit.worst_query_risk(1e5) == pytest.approx(p_from_psi(expected), rel=1e-9)
    q = rc.fit_tail(logp_from_psi(psi), method="lognormal-quantile")
    assert q.worst_query_risk(1e5) == pytest.approx(p_from_psi(psi.mean() + psi.std(ddof=1) * stats.norm.isf(1e-5)))


def test_exponential_mle_is_the_mean_excess():
    rng = np.random.default_rng(5)
    psi = np.sort(rng.exponential(0.3, 900) - 3.0)[::-1]
    fit = rc.fit_tail(logp_from_psi(psi), method="exponential", k=30)
    u, sigma = psi[30], np.mean(psi[:30] - psi[30])
    n = 1e6
    assert fit.worst_query_risk(n) == pytest.approx(p_from_psi(u + sigma * np.log(n * 30 / 900)), rel=1e-12)


def test_gpd_profile_matches_scipy_maximum_likelihood():
    rng = np.random.default_rng(11)
    for xi in (-0.2, 0.0, 0.3):
        x = stats.genpareto.rvs(xi, scale=0.5, size=200, random_state=rng)
        xi_hat, sigma_hat, ll = gpd_profile(x[None, :])
        c, _, scale = stats.genpareto.fit(x, floc=0)
        ll_scipy = stats.genpareto.logpdf(x, c, 0, scale).sum()
        assert ll[0] >= ll_scipy - 1e-3  # at least as good as scipy's optimizer
        assert xi_hat[0] == pytest.approx(c, abs=0.03)
        assert sigma_hat[0] == pytest.approx(scale, rel=0.05)


def test_shape_test_has_its_nominal_size():
    # Under shape = 0 the likelihood-ratio test should reject about 5% of the time at the 5% level.
    rng = np.random.default_rng(2)
    p = shape_test_pvalue(rng.exponential(1.0, (400, 50)))
    rate = np.mean(p < 0.05)
    assert 0.02 <= rate <= 0.09
    # and it detects a clearly heavy tail
    heavy = stats.genpareto.rvs(0.5, size=(50, 200), random_state=rng)
    assert np.mean(shape_test_pvalue(heavy) < 0.05) > 0.8


def test_mean_p_of_the_tail_matches_numerical_integration():
    from scipy import integrate

    rng = np.random.default_rng(4)
    psi = rng.exponential(0.25, 2000) - 2.0
    fit = rc.fit_tail(logp_from_psi(psi), method="exponential", k=40)
    model = fit.model
    u, sigma, zeta = model.threshold[0], model.sigma[0, 0], model.tail_mass[0]
    body = np.sum(p_from_psi(np.sort(psi)[::-1][40:])) / len(psi)
    tail = zeta * integrate.quad(lambda e: p_from_psi(u + e) * np.exp(-e / sigma) / sigma, 0, np.inf)[0]
    assert model.mean_p()[0] == pytest.approx(body + tail, rel=1e-8)
    n = 1e5
    assert fit.aggregate_risk(n) == pytest.approx(-np.expm1(n * np.log1p(-(body + tail))), rel=1e-8)


def test_lognormal_fits_data_whose_largest_scores_tie():
    psi = np.r_[-1.0, -1.0, np.random.default_rng(8).normal(-3.0, 0.5, 300)]
    fit = rc.fit_tail(logp_from_psi(psi), method="lognormal")
    assert fit.worst_query_risk(1e4) == pytest.approx(
        p_from_psi(psi.mean() + psi.std(ddof=1) * expected_max_normal(1e4))
    )
    with pytest.raises(rc.ForecastError, match="all equal"):
        rc.fit_tail(logp_from_psi(psi), method="gumbel-ols", k=2)


@pytest.mark.parametrize("name", methods())
def test_params_name_every_constructor_argument_and_rebuild_the_estimator(name):
    est = make_estimator(name)
    assert list(est.params()) == list(inspect.signature(type(est)).parameters)
    assert make_estimator(name, **est.params()).params() == est.params()
    json.dumps(est.params())  # provenance writes them to forecast.json


@pytest.mark.parametrize(
    "name, settings, expected",
    [
        (
            "binomial",
            {"k": 30, "grid_size": 60, "scale_sd": 1.5, "shape_sd": 0},
            {"k": 30, "grid_size": 60, "scale_median": 0.13, "scale_sd": 1.5, "shape_sd": 0.0},
        ),
        (
            "gpd-bayes",
            {"k": 25, "prior_sd": 0.3, "prior_mean": -0.15},
            {"k": 25, "prior_sd": 0.3, "prior_mean": -0.15},
        ),
        ("exponential", {"k": 0.1, "predictive": True}, {"k": 0.1, "predictive": True}),
        ("gpd", {"k": 40}, {"k": 40}),
        ("gumbel-ols", {"k": 20, "positions": "hazen"}, {"k": 20, "positions": "hazen"}),
        ("gumbel-ols-digamma", {"k": 15}, {"k": 15, "positions": "digamma"}),
    ],
)
def test_params_keep_settings_that_are_not_the_defaults(name, settings, expected):
    est = make_estimator(name, **settings)
    assert est.params() == expected
    assert make_estimator(name, **est.params()).params() == expected


def _independent_gpd_posterior(excess: np.ndarray, prior_mean: float, prior_sd: float) -> dict[str, float]:
    """Posterior means and sds of xi and log sigma by Simpson's rule on a dense grid, with scipy's density.

    scipy's genpareto shape c has our sign (c = xi > 0 is a heavy tail), unlike genextreme's. The prior is
    N(prior_mean, prior_sd^2) on xi and flat on log sigma. With 301 points a side the moments agree with 801 points to
    1e-6, and the box holds the posterior (asserted: its edges carry under 1e-9 of the peak density).
    """
    xi_axis = np.linspace(-1.2, 1.4, 301)
    ls_axis = np.log(excess.mean()) + np.linspace(-3.0, 3.0, 301)
    xi, ls = np.meshgrid(xi_axis, ls_axis, indexing="ij")
    log_post = stats.genpareto.logpdf(excess, xi[..., None], scale=np.exp(ls)[..., None]).sum(
        axis=-1
    ) + stats.norm.logpdf(xi, prior_mean, prior_sd)
    density = np.exp(log_post - log_post.max())
    assert max(density[[0, -1]].max(), density[:, [0, -1]].max()) < 1e-9

    def mean(f: np.ndarray) -> float:
        return float(
            integrate.simpson(integrate.simpson(density * f, x=ls_axis), x=xi_axis)
            / integrate.simpson(integrate.simpson(density, x=ls_axis), x=xi_axis)
        )

    xi_mean, ls_mean = mean(xi), mean(ls)
    return {
        "xi": xi_mean,
        "log_sigma": ls_mean,
        "xi_sd": np.sqrt(mean((xi - xi_mean) ** 2)),
        "log_sigma_sd": np.sqrt(mean((ls - ls_mean) ** 2)),
    }


# the default prior, and a pooled one centred off 0 (a sign error in the centre moves xi by 2 posterior sds)
@pytest.mark.parametrize("prior_mean, prior_sd", [(0.0, 0.2), (-0.2, 0.1)])
def test_gpd_bayes_posterior_matches_an_independent_integration(prior_mean, prior_sd):
    rng = np.random.default_rng(12)
    excess = stats.genpareto.rvs(0.15, scale=0.4, size=15, random_state=rng)
    truth = _independent_gpd_posterior(excess, prior_mean, prior_sd)
    xi, sigma, w, _ = gpd_posterior(excess, (prior_mean, prior_sd))
    xi_mean, ls_mean = np.sum(w * xi), np.sum(w * np.log(sigma))
    # The fine grid's cells are about a sixth of a posterior sd and the posterior is smooth and negligible at
    # the grid's edges, so the weighted sum is accurate far beyond the tolerance (measured: 6e-6 in each
    # mean). A hundredth of a posterior sd moves no forecast visibly, while a wrong prior or likelihood misses
    # by tenths of one (prior_sd 0.25 instead of 0.2: 0.28 sd in xi; a flat prior on sigma: 0.36 sd in log
    # sigma).
    assert xi_mean == pytest.approx(truth["xi"], abs=0.01 * truth["xi_sd"])
    assert ls_mean == pytest.approx(truth["log_sigma"], abs=0.01 * truth["log_sigma_sd"])
    assert np.sqrt(np.sum(w * (xi - xi_mean) ** 2)) == pytest.approx(truth["xi_sd"], rel=0.01)
    assert np.sqrt(np.sum(w * (np.log(sigma) - ls_mean) ** 2)) == pytest.approx(truth["log_sigma_sd"], rel=0.01)

    # The estimator's draws come from that posterior: the excesses over the 16th largest of the scores.
    u = -1.0
    scores = rc.Scores.from_logp(_scores_with_top(np.r_[u + excess, u], 400, rng))
    draws = BayesianGPD(k=15, prior_sd=prior_sd, prior_mean=prior_mean).draws(scores, 4000, np.random.default_rng(0))
    for name, values in (("xi", draws.xi[:, 0]), ("log_sigma", np.log(draws.sigma[:, 0]))):
        # within-cell jitter is symmetric, so the means are unbiased; 4 Monte Carlo standard errors
        assert abs(values.mean() - truth[name]) < 4 * values.std() / np.sqrt(len(values)), name


@pytest.mark.parametrize("xi", [-0.25, 0.0, 0.3])
def test_binomial_tail_likelihood_matches_an_independent_integration(xi):
    # log of the integral over excesses x of P(s | k, p(u + x)) times the GPD density, here by scipy's quad
    # with scipy's genpareto; the estimator integrates the same on cells of 0.01 in psi. A cell mass taken from
    # the exponential, or a flipped shape sign, misses by far more than the 0.01 allowed (in log, on these
    # counts: xi = 0.3 against 0 by 0.04 to 1.1, against -0.3 by 0.08 to 18).
    u, sigma = -1.5, 0.3  # p = 0.011 at the threshold
    s, k = np.array([0.0, 2.0, 9.0, 40.0]), np.full(4, 100.0)
    excess, grid_lik, grid_shift = BinomialPOT._tail_grid(s, k, u)
    ours = BinomialPOT._tail_ll(excess, grid_lik, grid_shift, sigma, np.array([xi]))[0]
    for s_i, ours_i in zip(s, ours):

        def integrand(x, s_i=s_i):
            p = float(p_from_psi(u + x))
            return (
                stats.binom.pmf(s_i, 100, p)
                / stats.binom.pmf(s_i, 100, s_i / 100 or 1e-3)
                * stats.genpareto.pdf(x, xi, scale=sigma)
            )

        upper = sigma / -xi if xi < 0 else 60.0
        value, _ = integrate.quad(integrand, 0.0, upper, limit=400, points=[0.5, 1.0, 2.0])
        # binomial_loglik leaves out the binomial coefficient; put it and the scaling above back
        log_truth = np.log(value) + stats.binom.logpmf(s_i, 100, s_i / 100 or 1e-3) - log(comb(100, int(s_i)))
        assert ours_i == pytest.approx(log_truth, abs=0.01), s_i
