"""The shape prior pooled across behaviors: against an independent integration and known shared shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

import rarecast as rc
from rarecast.errors import ForecastError
from rarecast.scores import logp_from_psi


def _gpd_scores(xi: float, m: int, rng: np.random.Generator) -> rc.Scores:
    """m exact scores whose psi is a generalized Pareto sample: every top-k's excesses have shape xi."""
    excess = stats.genpareto.rvs(xi, scale=0.5, size=m, random_state=rng)
    return rc.Scores.from_logp(logp_from_psi(excess - 1.0))


def _independent_shape_prior(related: list[rc.Scores], k: list[int]) -> tuple[float, float]:
    """The hierarchical prior's predictive mean and sd by Simpson's rule on dense grids, with scipy's density.

    Same model as the module's docstring: xi_b ~ N(mu, s^2), mu ~ N(0, 0.15^2), s log-uniform on [0.025, 0.3]
    (a flat density in log s), and a flat prior on each behavior's log sigma.
    """
    xi = np.linspace(-0.9, 1.3, 221)
    mu, log_s = np.linspace(-0.9, 1.1, 201), np.linspace(np.log(0.025), np.log(0.3), 121)
    log_w = stats.norm.logpdf(mu, 0.0, 0.15)[:, None] + np.zeros(len(log_s))
    for scores, kk in zip(related, k):
        psi = np.sort(scores.psi)[::-1]
        excess = psi[:kk] - psi[kk]
        log_sigma = np.log(excess.mean()) + np.linspace(-5.0, 4.0, 361)
        loglik = stats.genpareto.logpdf(excess, xi[:, None, None], scale=np.exp(log_sigma)[None, :, None]).sum(-1)
        lik = integrate.simpson(np.exp(loglik - loglik.max()), x=log_sigma, axis=1)  # over log sigma, per xi
        normal = stats.norm.pdf(xi, mu[:, None, None], np.exp(log_s)[None, :, None])
        log_w += np.log(integrate.simpson(normal * lik, x=xi, axis=2))
    w = np.exp(log_w - log_w.max())

    def expect(f: np.ndarray) -> float:
        return float(integrate.simpson(integrate.simpson(w * f, x=log_s, axis=1), x=mu))

    mean = expect(mu[:, None]) / expect(np.ones(1))
    second = expect(np.exp(2 * log_s)[None, :] + mu[:, None] ** 2) / expect(np.ones(1))
    return mean, float(np.sqrt(second - mean**2))


def test_with_no_related_behavior_the_prior_is_as_wide_as_the_default():
    # sqrt(0.15^2 + E[s^2]) for log-uniform s on [0.025, 0.3], integrated here independently of the grids
    log_s = np.linspace(np.log(0.025), np.log(0.3), 2001)
    e_s2 = integrate.simpson(np.exp(2 * log_s), x=log_s) / (log_s[-1] - log_s[0])
    prior = rc.pooled_shape_prior([])
    assert prior.mean == pytest.approx(0.0, abs=1e-3)
    assert prior.sd == pytest.approx(np.sqrt(0.15**2 + e_s2), abs=0.005)
    assert prior.sd == pytest.approx(0.2, abs=0.01)  # gpd-bayes's own default, so pooling nothing changes little


def test_pooled_prior_matches_an_independent_integration():
    rng = np.random.default_rng(3)
    related = [_gpd_scores(0.2, 100, rng), _gpd_scores(0.1, 200, rng)]  # k = 10 and 14 ("auto")
    mean, sd = _independent_shape_prior(related, [10, 14])
    prior = rc.pooled_shape_prior(related)
    # the grids' error is under 0.005 here; a prior on mu of sd 0.2 instead of 0.15 moves the mean by 0.02,
    # and leaving out one behavior's likelihood moves it by 0.05
    assert prior.mean == pytest.approx(mean, abs=0.005)
    assert prior.sd == pytest.approx(sd, abs=0.005)


def test_a_shared_shape_is_learnt_and_differing_shapes_keep_the_prior_wide():
    rng = np.random.default_rng(7)
    # 16 behaviors of 20,000 scores (141 excesses each): the data outweigh the N(0, 0.15^2) prior on mu,
    # which still pulls the mean a little toward 0 (0.25 to 0.30 over seeds 7 to 9)
    shared = rc.pooled_shape_prior([_gpd_scores(0.3, 20_000, rng) for _ in range(16)])
    assert shared.mean == pytest.approx(0.3, abs=0.07)
    assert shared.sd < 0.1
    mixed = rc.pooled_shape_prior([_gpd_scores(xi, 20_000, rng) for xi in (-0.2, 0.0, 0.3) * 2])
    assert mixed.sd > 0.15  # the spread between behaviors is learnt, so the prior does not claim a shape


def test_fit_tails_counts_each_behavior_once():
    rng = np.random.default_rng(11)
    data = {name: _gpd_scores(-0.2, 300, rng) for name in ("a", "b", "c")}
    fits = rc.fit_tails(data, n_draws=200)
    changed = rc.fit_tails({**data, "a": _gpd_scores(0.5, 300, rng)}, n_draws=200)
    # a's prior comes from b and c only; b's and c's priors see a
    assert changed["a"].estimator.params() == fits["a"].estimator.params()
    assert changed["b"].estimator.params()["prior_mean"] > fits["b"].estimator.params()["prior_mean"] + 0.02
    # each fit is gpd-bayes with that prior, so it forecasts what fit_tail with the same settings does
    params = fits["b"].estimator.params()
    alone = rc.fit_tail(data["b"], "gpd-bayes", n_draws=200, **params)
    assert fits["b"].worst_query_risk(1e6) == pytest.approx(alone.worst_query_risk(1e6), rel=1e-12)
    assert params["prior_mean"] < 0  # three bounded tails pull each other's prior below the default's 0


def test_fit_tails_refuses_too_few_behaviors_and_names_a_bad_one():
    rng = np.random.default_rng(0)
    with pytest.raises(ForecastError, match="at least 2 behaviors"):
        rc.fit_tails({"a": _gpd_scores(0.0, 100, rng)})
    counts = rc.Scores.from_counts([1, 0, 3] * 20, [10] * 60)
    with pytest.raises(ForecastError, match="behavior 'b'.*exact"):
        rc.fit_tails({"a": _gpd_scores(0.0, 100, rng), "b": counts})
