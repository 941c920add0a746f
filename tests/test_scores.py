import numpy as np
import pytest

from rarecast import ForecastError, Scores
from rarecast.scores import logp_from_psi, psi_from_logp


def test_psi_keeps_precision_at_both_ends():
    # p = 1e-30: log p is exact, psi = -log(30 log 10)
    assert psi_from_logp(np.array([np.log(1e-30)]))[0] == pytest.approx(-np.log(30 * np.log(10)), rel=1e-14)
    # p = 1 - 1e-9: log p = log1p(-1e-9) ~ -1e-9, so psi ~ log(1e9); computing 1 - p first would lose digits
    logp = np.log1p(-1e-9)
    assert psi_from_logp(np.array([logp]))[0] == pytest.approx(np.log(1e9), rel=1e-7)


def test_psi_round_trip_and_limits():
    logp = np.array([-1e-12, -0.5, -3.0, -700.0])
    assert np.allclose(logp_from_psi(psi_from_logp(logp)), logp, rtol=1e-13)
    assert psi_from_logp(np.array([0.0]))[0] == np.inf
    assert psi_from_logp(np.array([-np.inf]))[0] == -np.inf


@pytest.mark.parametrize(
    "make, message, index",
    [
        (lambda: Scores.from_logp([-1.0, np.nan, -2.0]), "NaN", 1),
        (lambda: Scores.from_logp([-1.0, -2.0, 0.3]), "> 0", 2),
        (lambda: Scores.from_p([0.1, 1.2]), "[0, 1]", 1),
        (lambda: Scores.from_counts([1, 5], [10, 4]), "successes=5", 1),
        (lambda: Scores.from_counts([1.5], [10]), "whole numbers", 0),
    ],
)
def test_validation_names_the_bad_score(make, message, index):
    with pytest.raises(ForecastError) as err:
        make()
    assert message in str(err.value)
    assert err.value.index == index


def test_counts_are_kept_as_counts():
    s = Scores.from_counts([0, 3, 0], [100, 100, 50])
    assert s.kind == "counts" and s.m == 3
    assert s.successes.tolist() == [0, 3, 0] and s.trials.tolist() == [100, 100, 50]
    with pytest.raises(ForecastError):
        _ = s.psi  # zeros must never become made-up tiny probabilities
