"""Statistical behaviour against known truths: consistency and interval coverage over seeded repetitions."""

import numpy as np
import pytest

import rarecast as rc
from rarecast.errors import RarecastWarning
from rarecast.synthetic import FAMILIES


def _abs_log_errors(method: str, m: int, reps: int, n: float, **params) -> np.ndarray:
    fam = FAMILIES["exponential"]
    truth = fam.true_worst_query_risk(n)
    errs = []
    for rep in range(reps):
        scores = fam.sample(np.random.default_rng([m, rep]), m)
        errs.append(np.log10(rc.fit_tail(scores, method=method, **params).worst_query_risk(n) / truth))
    return np.abs(errs)


@pytest.mark.parametrize("method", ["exponential", "gpd-bayes"])
def test_error_shrinks_as_m_grows_when_the_model_is_right(method):
    small = _abs_log_errors(method, 200, 40, 1e5).mean()
    large = _abs_log_errors(method, 3000, 40, 1e5).mean()
    assert large < 0.6 * small


@pytest.mark.parametrize("method, low, high", [("exponential", 0.82, 0.97), ("gpd-bayes", 0.85, 1.0)])
def test_interval_coverage_on_an_exact_exponential_tail(method, low, high):
    """The exponential posterior is the true model here, so its 90% intervals should cover about 90%.
    gpd-bayes also doubts the shape (xi = 0 is not known to it), so it must cover at least nominally."""
    fam = FAMILIES["exponential"]
    n = np.array([3e3, 3e4])
    truth = fam.true_worst_query_risk(n)
    hits = []
    for rep in range(150):
        fit = rc.fit_tail(fam.sample(np.random.default_rng([7, rep]), 300), method=method, n_draws=400, seed=rep)
        lo, hi = fit.interval("worst_query_risk", n, level=0.9)
        hits.append((lo <= truth) & (truth <= hi))
    coverage = np.mean(hits, axis=0)
    # 150 repetitions: the binomial standard error of a 90% coverage is 2.4 points
    assert np.all((coverage >= low) & (coverage <= high)), coverage


def test_counts_fit_agrees_with_the_exact_fit_on_the_same_queries():
    fam = FAMILIES["exponential-k500"]
    n = 1e5
    truth = fam.true_worst_query_risk(n)
    count_err, exact_err = [], []
    for rep in range(8):
        rng = np.random.default_rng([9, rep])
        psi = fam.sample_psi(rng, 1000)
        exact = rc.Scores.from_logp(-np.exp(-psi))
        counts = rc.Scores.from_counts(rng.binomial(500, np.exp(exact.logp)), np.full(1000, 500))
        count_err.append(np.log10(rc.fit_tail(counts).worst_query_risk(n) / truth))
        exact_err.append(np.log10(rc.fit_tail(exact, method="exponential").worst_query_risk(n) / truth))
    # sampling adds noise, but the count likelihood must not be biased by zeros: errors stay comparable
    assert np.mean(np.abs(count_err)) < np.mean(np.abs(exact_err)) + 0.35
    assert abs(np.mean(count_err)) < 0.4


def test_counts_warn_when_few_queries_have_successes():
    rng = np.random.default_rng(1)
    successes = np.zeros(400, dtype=int)
    successes[:6] = rng.integers(1, 20, 6)
    scores = rc.Scores.from_counts(successes, np.full(400, 100))
    with pytest.warns(rc.errors.RarecastWarning, match="only 6 of 400 queries had any success"):
        try:
            rc.fit_tail(scores)
        except rc.ForecastError:
            pass  # thin data may also refuse to fit; the warning must come first


def test_counts_with_no_success_refuse():
    # The thin-data warning comes first, then the refusal.
    with pytest.warns(RarecastWarning, match="only 0 of 200 queries had any success"), \
            pytest.raises(rc.ForecastError, match="no query had a success"):
        rc.fit_tail(rc.Scores.from_counts(np.zeros(200), np.full(200, 100)))
