"""Exact-answer checks of each estimator against quantities computed independently here."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma

import rarecast as rc
from rarecast.scores import logp_from_psi, p_from_psi
from rarecast.tail.gpd import gpd_profile, shape_test_pvalue
from rarecast.tail.lognormal import expected_max_normal


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
    assert fit.worst_query_risk(1e4) == pytest.approx(p_from_psi(psi.mean() + psi.std(ddof=1) * expected_max_normal(1e4)))
    with pytest.raises(rc.ForecastError, match="all equal"):
        rc.fit_tail(logp_from_psi(psi), method="gumbel-ols", k=2)
