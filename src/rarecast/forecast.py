"""fit_tail() and the fitted forecast it returns."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from rarecast.diagnostics import Diagnostics, diagnose
from rarecast.errors import ForecastError, RarecastWarning
from rarecast.risks import RISKS, check_argument
from rarecast.scores import Scores
from rarecast.tail import DEFAULT_COUNTS, DEFAULT_EXACT, TailEstimator, make_estimator
from rarecast.tail.base import PsiDistribution


#: Deployment sizes and thresholds reported when none are asked for.
DEFAULT_N = (1e4, 1e6, 1e9)
DEFAULT_TAU = (0.5,)


def _as_scores(data) -> Scores:
    if isinstance(data, Scores):
        return data
    return Scores.from_logp(data)


def _shaped(values: np.ndarray, like):
    """Return a float for scalar input and an array of the input's shape otherwise."""
    shape = np.shape(like)
    return float(values[0]) if shape == () else values.reshape(shape)


@dataclass
class Fit:
    """A fitted tail with forecasts of the three deployment risks, intervals and diagnostics.

    Made by :func:`fit_tail`; every forecast method takes a scalar or an array and returns the same shape.
    """

    scores: Scores
    estimator: TailEstimator
    model: PsiDistribution
    method: str
    n_draws: int = 1000
    seed: int = 0
    _draws: PsiDistribution | None = field(default=None, repr=False)

    def forecast(self, risk: str, x):
        """Point forecast of ``risk`` ("worst_query_risk", "behavior_frequency", "aggregate_risk") at x."""
        arr = check_argument(risk, x)
        rule = self.estimator.point_rule(risk)
        if rule is None:
            return _shaped(RISKS[risk](self.model, arr)[0], x)
        values = RISKS[risk](self.draws(), arr)
        point = np.nanmean(values, axis=0) if rule == "mean" else np.nanquantile(values, rule, axis=0)
        return _shaped(point, x)

    def worst_query_risk(self, n):
        """Forecast of the largest elicitation probability among n deployment queries."""
        return self.forecast("worst_query_risk", n)

    def behavior_frequency(self, tau):
        """Forecast fraction of deployment queries whose elicitation probability exceeds tau."""
        return self.forecast("behavior_frequency", tau)

    def aggregate_risk(self, n):
        """Forecast probability that at least one of n single-sample outputs shows the behavior."""
        return self.forecast("aggregate_risk", n)

    def draws(self) -> PsiDistribution:
        """Replicate fits (bootstrap or posterior, by estimator) behind the intervals; cached."""
        if self._draws is None:
            rng = np.random.default_rng(self.seed)
            draws = self.estimator.draws(self.scores, self.n_draws, rng)
            self._draws = draws.take(_usable(draws))
            if self._draws.replicates < max(10, self.n_draws // 10):
                raise ForecastError("too few resampled fits succeeded for an interval; score more queries")
        return self._draws

    def interval(self, risk: str, x, level: float = 0.9):
        """Equal-tailed ``level`` interval for ``risk`` at x, as (low, high) of the input's shape."""
        if not 0 < level < 1:
            raise ForecastError(f"level must lie strictly between 0 and 1, got {level!r}")
        arr = check_argument(risk, x)
        values = RISKS[risk](self.draws(), arr)
        alpha = (1 - level) / 2
        low, high = np.nanquantile(values, [alpha, 1 - alpha], axis=0)
        return _shaped(low, x), _shaped(high, x)

    def diagnostics(self) -> Diagnostics:
        """Checks of the fit: tail decay, goodness of fit, stability over k, ties and floors."""
        return diagnose(self)

    def summary(self, n=(1e4, 1e6), tau=(0.5,), level: float = 0.9) -> dict:
        """Everything a report needs as plain data: forecasts with intervals at each n and tau, diagnostics."""
        rows = []
        for risk, xs, key in [("worst_query_risk", n, "n"), ("behavior_frequency", tau, "tau"),
                              ("aggregate_risk", n, "n")]:
            xs = np.atleast_1d(np.asarray(xs, dtype=float))
            if xs.size == 0:
                continue
            point = np.atleast_1d(self.forecast(risk, xs))
            low, high = (np.atleast_1d(v) for v in self.interval(risk, xs, level))
            rows += [{"risk": risk, key: float(x), "forecast": float(f), "low": float(lo), "high": float(hi),
                      "level": level} for x, f, lo, hi in zip(xs, point, low, high)]
        return {
            "method": self.method,
            "params": self.estimator.params(),
            "m": self.scores.m,
            "kind": self.scores.kind,
            "forecasts": rows,
            "diagnostics": self.diagnostics().to_dict(),
        }


def _usable(draws: PsiDistribution) -> np.ndarray:
    probe = draws.worst_psi(np.array([1e6]))[:, 0]
    return ~np.isnan(probe) & draws.decays()


def fit_tail(data, method: str | None = None, *, n_draws: int = 1000, seed: int = 0, **params) -> Fit:
    """Fit the tail of elicitation probabilities and return forecasts of deployment risks.

    ``data`` is a 1-D array of natural-log probabilities or a :class:`~rarecast.Scores` (exact or counts).
    ``method`` names a registered estimator (:func:`rarecast.tail.methods`); by default the benchmark winner
    for exact scores and the binomial likelihood fit for counts. ``params`` go to the estimator (e.g. ``k``).

    >>> import numpy as np, rarecast as rc
    >>> rng = np.random.default_rng(1)
    >>> logp = -np.exp(-(rng.exponential(0.3, 1000) - 2.5))   # an exponential tail in psi
    >>> fit = rc.fit_tail(logp, method="gumbel-ols")
    >>> fit.worst_query_risk([1e4, 1e6]).shape
    (2,)
    """
    scores = _as_scores(data)
    if method is None:
        method = DEFAULT_EXACT if scores.kind == "exact" else DEFAULT_COUNTS
    estimator = make_estimator(method, **params)
    model = estimator.fit_point(scores)
    if not _usable(model)[0]:
        raise ForecastError(
            f"the {method} fit's tail does not decay (the top scores rise with rank or are tied); "
            "the data show no tail to extrapolate: score more queries or check them for a floor"
        )
    return Fit(scores, estimator, model, method, n_draws=n_draws, seed=seed)


def forecast_result(scores, provenance: dict, *, n=DEFAULT_N, tau=DEFAULT_TAU, method: str | None = None,
                    level: float = 0.9, **params) -> tuple[Fit, dict]:
    """Fit the tail and return ``(fit, result)``: :meth:`Fit.summary` plus warnings, provenance and version.

    This is what the CLI prints, ``rarecast run`` writes to forecast.json, and the report shows. Warnings
    raised while fitting are collected into ``result["warnings"]`` with the diagnostics' own.
    """
    from rarecast import __version__

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RarecastWarning)
        fit = fit_tail(scores, method=method, **params)
        result = fit.summary(n=list(n), tau=list(tau), level=level)
    result["warnings"] = [str(w.message) for w in caught] + result["diagnostics"]["warnings"]
    result.update(provenance=provenance, rarecast_version=__version__)
    return fit, result
