"""fit_tail() and the fitted forecast it returns."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike

from rarecast.errors import ForecastError, RarecastWarning
from rarecast.forecasting.diagnostics import Diagnostics, diagnose
from rarecast.forecasting.result import ForecastResult, ForecastRow
from rarecast.forecasting.risks import RISKS, check_argument, max_quantile_psi
from rarecast.forecasting.tail import DEFAULT_COUNTS, DEFAULT_EXACT, TailEstimator, make_estimator
from rarecast.forecasting.tail.base import PsiDistribution
from rarecast.provenance import rarecast_version
from rarecast.scores import Scores, p_from_psi

#: Deployment sizes and thresholds reported when none are asked for.
DEFAULT_N = (1e4, 1e6, 1e9)
DEFAULT_TAU = (0.5,)
#: Fewest replicate fits behind an interval or a predictive forecast.
MIN_DRAWS = 20
#: A forecast has its argument's shape: a float for a scalar, else an array. Any rather than ``float | np.ndarray``
#: so that a caller, who knows which it passed, need not narrow the result.
Shaped: TypeAlias = Any


def as_scores(data: Scores | ArrayLike) -> Scores:
    """Scores as given, or exact scores from natural-log probabilities."""
    if isinstance(data, Scores):
        return data
    return Scores.from_logp(data)


def _shaped(values: np.ndarray, like: ArrayLike) -> float | np.ndarray:
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

    def forecast(self, risk: str, x: ArrayLike, quantile: float | None = None) -> Shaped:
        """Point forecast of ``risk`` ("worst_query_risk", "behavior_frequency", "aggregate_risk") at x.

        A number q in (0, 1) gives the q-quantile of the forecast's predictive distribution: for worst-query
        risk, of the largest p among n deployment queries (q = 0.75 errs on the safe side three times in
        four when the fit is calibrated); for the other two, of their distribution over the draws. With
        ``quantile=None`` the estimator's own rule applies. The default estimators forecast all three risks
        from one set of draws: the predictive median of the deployment maximum and of the aggregate risk,
        and, for behavior frequency, the predictive mean, i.e. the probability that a fresh deployment query
        exceeds tau (a median over draws is exactly 0 whenever most draws end below tau; see
        docs/choices.md). The paper's estimators give a plug-in forecast from the point fit, as published.
        """
        arr = check_argument(risk, x)
        if quantile is not None:
            return _shaped(self._quantile(risk, arr, check_quantile(quantile)), x)
        if self.estimator.point_rule(risk) is None:
            return _shaped(RISKS[risk].compute(self.model, arr)[0], x)
        if risk == "behavior_frequency":
            return _shaped(np.nanmean(RISKS[risk].compute(self.draws(), arr), axis=0), x)
        return self.forecast(risk, x, 0.5)

    def worst_query_risk(self, n: ArrayLike, quantile: float | None = None) -> Shaped:
        """Forecast of the largest elicitation probability among n deployment queries.

        ``quantile`` picks a point of its predictive distribution (e.g. 0.75 for a conservative forecast);
        see :meth:`forecast`.
        """
        return self.forecast("worst_query_risk", n, quantile)

    def behavior_frequency(self, tau: ArrayLike, quantile: float | None = None) -> Shaped:
        """Forecast fraction of deployment queries whose elicitation probability exceeds tau."""
        return self.forecast("behavior_frequency", tau, quantile)

    def aggregate_risk(self, n: ArrayLike, quantile: float | None = None) -> Shaped:
        """Forecast probability that at least one of n single-sample outputs shows the behavior."""
        return self.forecast("aggregate_risk", n, quantile)

    def draws(self) -> PsiDistribution:
        """Replicate fits (bootstrap or posterior, by estimator) behind the intervals; cached."""
        if self._draws is None:
            if self.n_draws < MIN_DRAWS:
                raise ForecastError(
                    f"n_draws = {self.n_draws} is too few for intervals or for the forecasts of "
                    f"method {self.method!r}, which come from its draws; use n_draws >= {MIN_DRAWS}"
                )
            rng = np.random.default_rng(self.seed)
            draws = self.estimator.draws(self.scores, self.n_draws, rng)
            self._draws = draws.take(_usable(draws))
            if self._draws.replicates < max(10, self.n_draws // 10):
                raise ForecastError("too few resampled fits succeeded for an interval; score more queries")
        return self._draws

    def interval(self, risk: str, x: ArrayLike, level: float = 0.9) -> ConfidenceInterval:
        """Equal-tailed ``level`` interval for ``risk`` at x, as a named (low, high) pair of the input's shape.

        For worst-query risk it is the predictive interval of the largest p among n deployment queries, the
        quantity a deployment meets; for the other two, the interval of the risk over the draws.
        """
        check_quantile(level, "level")
        arr = check_argument(risk, x)
        alpha = (1 - level) / 2
        low, high = (self._quantile(risk, arr, q) for q in (alpha, 1 - alpha))
        return ConfidenceInterval(_shaped(low, x), _shaped(high, x))

    def _quantile(self, risk: str, arr: np.ndarray, q: float) -> np.ndarray:
        """The q-quantile of ``risk`` at each of ``arr`` over the draws; for worst-query risk, of the
        predictive distribution of the deployment maximum. Point forecasts and intervals share it."""
        if risk == "worst_query_risk":
            return p_from_psi(max_quantile_psi(self.draws(), arr, q))
        values: np.ndarray = np.nanquantile(RISKS[risk].compute(self.draws(), arr), q, axis=0)
        return values

    def diagnostics(self) -> Diagnostics:
        """Checks of the fit: tail decay, goodness of fit, stability over k, ties and floors."""
        return diagnose(self)

    def summary(
        self, n: ArrayLike = (1e4, 1e6), tau: ArrayLike = (0.5,), level: float = 0.9, quantile: float | None = None
    ) -> dict[str, Any]:
        """Everything a report needs as plain data: forecasts with intervals at each n and tau, diagnostics.

        ``quantile`` chooses the point forecasts as in :meth:`forecast` (None: the estimator's own rule)."""
        return {
            "method": self.method,
            "quantile": quantile,
            "params": self.estimator.params(),
            "m": self.scores.m,
            "kind": self.scores.kind,
            "forecasts": [row.to_dict() for row in self.forecast_rows(n, tau, level, quantile)],
            "diagnostics": self.diagnostics().to_dict(),
        }

    def forecast_rows(
        self, n: ArrayLike, tau: ArrayLike, level: float = 0.9, quantile: float | None = None
    ) -> list[ForecastRow]:
        """Every risk's point forecast and ``level`` interval, at each n (or tau), in :data:`RISKS` order."""
        rows = []
        for risk, spec in RISKS.items():
            xs = np.atleast_1d(np.asarray(tau if spec.argument == "tau" else n, dtype=float))
            if xs.size == 0:
                continue
            point = np.atleast_1d(self.forecast(risk, xs, quantile))
            low, high = (np.atleast_1d(v) for v in self.interval(risk, xs, level))
            rows += [
                ForecastRow(risk, float(x), float(f), float(lo), float(hi), level)
                for x, f, lo, hi in zip(xs, point, low, high)
            ]
        return rows


class ConfidenceInterval(NamedTuple):
    """An interval's ends; unpacks as ``(low, high)`` (scipy's ``ConfidenceInterval``)."""

    low: Shaped
    high: Shaped


def check_quantile(q: object, name: str = "quantile") -> float:
    """A probability strictly between 0 and 1, or a ForecastError naming the argument."""
    if isinstance(q, bool) or not isinstance(q, (int, float, np.floating)) or not 0 < q < 1:
        raise ForecastError(f"{name} must lie strictly between 0 and 1, got {q!r}")
    return float(q)


def _usable(draws: PsiDistribution) -> np.ndarray:
    probe = draws.worst_psi(np.array([1e6]))[:, 0]
    usable: np.ndarray = ~np.isnan(probe) & draws.decays()
    return usable


def fit_tail(
    data: Scores | ArrayLike, method: str | None = None, *, n_draws: int = 1000, seed: int = 0, **params: Any
) -> Fit:
    """Fit the tail of elicitation probabilities and return forecasts of deployment risks.

    ``data`` is a 1-D array of natural-log probabilities or a :class:`~rarecast.Scores` (exact or counts).
    ``method`` names a registered estimator (:func:`rarecast.forecasting.tail.methods`); by default the benchmark winner
    for exact scores and the binomial likelihood fit for counts. ``params`` go to the estimator (e.g. ``k``).

    >>> import numpy as np, rarecast as rc
    >>> rng = np.random.default_rng(1)
    >>> logp = -np.exp(-(rng.exponential(0.3, 1000) - 2.5))   # an exponential tail in psi
    >>> fit = rc.fit_tail(logp, method="gumbel-ols")
    >>> fit.worst_query_risk([1e4, 1e6]).shape
    (2,)
    """
    scores = as_scores(data)
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


def forecast_result(
    scores: Scores | ArrayLike,
    provenance: dict[str, Any],
    *,
    n: Sequence[float] = DEFAULT_N,
    tau: Sequence[float] = DEFAULT_TAU,
    method: str | None = None,
    level: float = 0.9,
    quantile: float | None = None,
    **params: Any,
) -> tuple[Fit, ForecastResult]:
    """Fit the tail and return ``(fit, result)``: the forecasts of :meth:`Fit.summary` with warnings,
    provenance and version, as one :class:`~rarecast.forecasting.result.ForecastResult`.

    This is what the CLI prints, ``rarecast run`` writes to forecast.json, and the report shows. Warnings
    raised while fitting are collected into ``result.warnings`` with the diagnostics' own.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RarecastWarning)
        fit = fit_tail(scores, method=method, **params)
        rows = fit.forecast_rows(list(n), list(tau), level, quantile)
        diagnostics = fit.diagnostics().to_dict()
    notes = [f"method {fit.method}: {fit.estimator.interval_note}"] if fit.estimator.interval_note else []
    # refits (draws, stability over k) repeat the same warning: keep each once, in order
    found = list(dict.fromkeys([str(w.message) for w in caught] + diagnostics["warnings"] + notes))
    return fit, ForecastResult(
        method=fit.method,
        quantile=quantile,
        params=fit.estimator.params(),
        m=fit.scores.m,
        kind=fit.scores.kind,
        forecasts=rows,
        diagnostics=diagnostics,
        warnings=found,
        provenance=provenance,
        rarecast_version=rarecast_version(),
    )
