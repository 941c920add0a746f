"""Pool the tail's shape across related behaviors: a hierarchical prior on gpd-bayes's shape xi.

Ten or thirty top scores say little about a tail's shape, yet the shape decides a forecast 100x out: an
estimator told the true shape has a quarter to a half less error (docs/choices.md, "Pooling the shape across
behaviors"). Behaviors elicited from one model often share much of it. The model: each behavior's shape is
xi_b ~ N(mu, s^2), with mu ~ N(0, 0.15^2) and s log-uniform on [0.025, 0.3]. With no related behavior a
shape's prior spread is then about 0.2, gpd-bayes's default. A behavior's prior is its shape's predictive
distribution given the *other* behaviors' tails, so that its own scores count once, matched to a normal by
its mean and variance; gpd-bayes takes it as ``prior_mean`` and ``prior_sd``.

>>> import numpy as np, rarecast as rc
>>> rng = np.random.default_rng(0)
>>> related = [np.log(rng.beta(0.3, 40, size=300)) for _ in range(3)]
>>> prior = rc.pooled_shape_prior(related)
>>> prior.sd < 0.2   # three related tails narrow the default N(0, 0.2^2)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp
from scipy.stats import norm

from rarecast.errors import ForecastError
from rarecast.forecasting.fit import Fit, as_scores, fit_tail
from rarecast.forecasting.tail.gpd_bayes import SHAPE_RANGE, BayesianGPD, gpd_log_likelihood
from rarecast.scores import Scores

#: the shapes at which :func:`shape_log_likelihood` evaluates (the span of gpd-bayes's posterior grid)
SHAPE_GRID = np.linspace(*SHAPE_RANGE, 161)
_LOG_SCALES = np.linspace(-4.0, 3.0, 141)  # offsets from the log of the mean excess
_MU = np.linspace(-0.8, 1.0, 73)
_MU_SD = 0.15
# log-uniform s by the midpoint rule: 24 equal steps in log s, each point weighing the same
_S = np.exp(np.log(0.025) + (np.arange(24) + 0.5) * np.log(0.3 / 0.025) / 24)


@dataclass(frozen=True)
class ShapePrior:
    """A normal prior N(mean, sd^2) on the tail's shape xi."""

    mean: float = 0.0
    sd: float = 0.2

    def params(self) -> dict[str, float]:
        """The prior as gpd-bayes's settings: ``fit_tail(scores, "gpd-bayes", **prior.params())``."""
        return {"prior_mean": self.mean, "prior_sd": self.sd}


def shape_log_likelihood(scores: Scores | ArrayLike, k: int | float | str = "auto") -> np.ndarray:
    """Log likelihood of each shape in :data:`SHAPE_GRID` given the k largest scores' excesses, with the scale
    integrated out under gpd-bayes's flat prior on log sigma."""
    estimator = BayesianGPD(k)
    _, _, excess, _, _ = estimator.split(estimator.check(as_scores(scores))[None, :])
    xi, log_sigma = np.meshgrid(SHAPE_GRID, np.log(excess.mean()) + _LOG_SCALES, indexing="ij")
    loglik = gpd_log_likelihood(excess[0], xi.ravel(), log_sigma.ravel()).reshape(xi.shape)
    return logsumexp(loglik, axis=1) + np.log(_LOG_SCALES[1] - _LOG_SCALES[0])


def predictive_shape_prior(likelihoods: Sequence[np.ndarray]) -> ShapePrior:
    """A new behavior's shape prior given other behaviors' :func:`shape_log_likelihood`, as a matched normal."""
    # log N(xi; mu, s) on the shape grid, axes (mu, s, xi)
    log_normal = norm.logpdf(SHAPE_GRID, _MU[:, None, None], _S[None, :, None]) + np.log(SHAPE_GRID[1] - SHAPE_GRID[0])
    log_w = np.broadcast_to(norm.logpdf(_MU, 0.0, _MU_SD)[:, None], (len(_MU), len(_S))).copy()
    for loglik in likelihoods:
        log_w += logsumexp(log_normal + loglik, axis=2)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = float(np.sum(w * _MU[:, None]))
    second = float(np.sum(w * (_S[None, :] ** 2 + _MU[:, None] ** 2)))
    return ShapePrior(mean, float(np.sqrt(second - mean**2)))


def pooled_shape_prior(related: Sequence[Scores | ArrayLike], k: int | float | str = "auto") -> ShapePrior:
    """The shape prior for a behavior, learnt from the tails of related behaviors (exact scores each).

    The related behaviors' k largest scores inform the hierarchical model in the module's docstring; the
    result is the predictive distribution of one more behavior's shape. Pass it on with
    ``rc.fit_tail(scores, method="gpd-bayes", **prior.params())``, or let :func:`fit_tails` do both steps.
    """
    return predictive_shape_prior([shape_log_likelihood(scores, k) for scores in related])


def fit_tails(
    behaviors: Mapping[str, Scores | ArrayLike], *, k: int | float | str = "auto", n_draws: int = 1000, seed: int = 0
) -> dict[str, Fit]:
    """Fit gpd-bayes to several behaviors of one model at once, each with its shape prior pooled from the others.

    ``behaviors`` maps a name to exact scores (log-probabilities or :class:`~rarecast.Scores`). Each fit's
    ``estimator.params()`` records the prior it got. Pooling helps when the behaviors' tails share a shape and
    costs when one of them hides a rare mode the others lack (measured in docs/choices.md).

    >>> import numpy as np, rarecast as rc
    >>> rng = np.random.default_rng(0)
    >>> fits = rc.fit_tails({b: np.log(rng.beta(0.3, 40, size=300)) for b in ("a", "b", "c")})
    >>> sorted(fits), fits["a"].estimator.params()["prior_sd"] < 0.2
    (['a', 'b', 'c'], True)
    """
    if len(behaviors) < 2:
        raise ForecastError(f"pooling the shape needs at least 2 behaviors, got {len(behaviors)}")
    likelihoods = {}
    for name, data in behaviors.items():
        try:
            likelihoods[name] = shape_log_likelihood(data, k)
        except ForecastError as exc:
            raise ForecastError(f"behavior {name!r}: {exc}") from None
    fits = {}
    for name, data in behaviors.items():
        prior = predictive_shape_prior([loglik for other, loglik in likelihoods.items() if other != name])
        fits[name] = fit_tail(data, "gpd-bayes", n_draws=n_draws, seed=seed, k=k, **prior.params())
    return fits
