"""Backtesting forecasts on a scored pool: disjoint random evaluation / deployment splits, truth from the split.

Each trial draws, without replacement, ``max(m)`` evaluation queries and, disjoint from them, ``max(n)``
deployment queries from the pool; the evaluation set of size m is the first m of the drawn evaluation queries
and the deployment set of size n the first n of the drawn deployment queries (nested within a trial, so one
permutation serves every (m, n); across trials the splits are independent). The truth is measured on the
deployment set: the realized max p (worst-query risk), the realized fraction of p above tau (behavior
frequency) and the realized ``1 - prod(1 - p)`` (aggregate risk).

Speed: estimators whose ``fit_sorted`` fits many rows at once get every trial's point forecast from one
``(trials, m)`` call. Intervals (for coverage) need replicate fits per trial; they run through the public
:class:`~rarecast.forecasting.fit.Fit` with ``n_draws`` draws each (default 100, fewer than a forecast's 1000: a 90%
interval's ends move by a few percent of its width, which does not change coverage at the precision 500
trials give; ``n_draws=0`` skips intervals and reports coverage as NaN, for the estimators whose point
forecasts need no draws). Estimators that fit one sample at a
time (gpd-bayes, binomial) are looped, trial by trial.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from rarecast.errors import ForecastError, InputError
from rarecast.forecasting.fit import MIN_DRAWS, Fit, fit_tail
from rarecast.forecasting.risks import RISKS, check_argument
from rarecast.forecasting.tail import PsiDistribution, TailEstimator, make_estimator
from rarecast.scores import Scores, psi_from_logp

#: The risks a backtest scores, in report order.
RISK_NAMES = tuple(RISKS)
#: The row keys of :meth:`BacktestResult.rows` that the CLI's ``--json`` promises.
ROW_KEYS = ("method", "risk", "m", "n", "mae_log10", "within_1oom", "underestimation", "coverage")
_TINY = np.finfo(float).tiny


@dataclass(frozen=True)
class Splits:
    """Evaluation log p ``eval_logp`` (trials, max m) and the deployment truths, each (trials, len(n))."""

    eval_logp: np.ndarray
    n: np.ndarray
    truth: dict[str, np.ndarray]


def realized_truths(deploy_logp: np.ndarray, n: np.ndarray, tau: float) -> dict[str, np.ndarray]:
    """Realized risks on the first n of each row of ``deploy_logp`` (trials, >= max n); each (trials, len(n)).

    Aggregate risk is ``-expm1(sum log1p(-p))``, computed in log space so that p near 1 or tiny p stay exact.
    """
    cols = n.astype(int) - 1
    p = np.exp(deploy_logp)
    return {
        "worst_query_risk": np.maximum.accumulate(p, axis=1)[:, cols],
        "behavior_frequency": np.cumsum(p > tau, axis=1)[:, cols] / n[None, :],
        "aggregate_risk": -np.expm1(np.cumsum(np.log1p(-p), axis=1)[:, cols]),
    }


def draw_splits(
    logp: np.ndarray, m_max: int, n: np.ndarray, trials: int, tau: float, rng: np.random.Generator
) -> Splits:
    """``trials`` disjoint evaluation / deployment splits of the pool ``logp`` and their deployment truths."""
    n_max = int(n.max())
    if m_max + n_max > len(logp):
        raise InputError(
            f"the pool has {len(logp)} queries, fewer than max m + max n = {m_max} + {n_max}; "
            "score more queries or lower --m / --n"
        )
    evals, truths = np.empty((trials, m_max)), []
    for t in range(trials):  # one permutation per trial; (trials, N) at once would not fit in memory
        idx = rng.permutation(len(logp))[: m_max + n_max]
        evals[t] = logp[idx[:m_max]]
        truths.append(realized_truths(logp[idx[None, m_max:]], n, tau))
    return Splits(evals, n, {r: np.concatenate([t[r] for t in truths]) for r in RISK_NAMES})


def mean_or_nan(a: np.ndarray) -> float:
    """Mean of a (possibly boolean) array; NaN when it is empty (no trial to average)."""
    return float(np.mean(a)) if a.size else float("nan")


@dataclass
class Cell:
    """Per-trial forecasts, interval ends and truths of one (method, risk, m, n); NaN marks a failed fit."""

    method: str
    risk: str
    m: int
    n: int
    forecast: np.ndarray
    low: np.ndarray
    high: np.ndarray
    truth: np.ndarray
    floor: float

    def metrics(self) -> dict[str, float | int]:
        """Mean absolute log10 error, share within one order of magnitude, underestimation rate, coverage and
        the median width of the intervals in orders of magnitude."""
        ok = np.isfinite(self.forecast)
        f, t = (np.maximum(a[ok], self.floor) for a in (self.forecast, self.truth))
        err = np.log10(f) - np.log10(t)
        has = np.isfinite(self.low[ok]) & np.isfinite(self.high[ok])  # no interval: not counted in coverage
        lo, hi = np.maximum(self.low[ok][has], self.floor), np.maximum(self.high[ok][has], self.floor)
        covered = (lo <= t[has]) & (t[has] <= hi)
        width = np.log10(hi) - np.log10(lo)
        return {
            "mae_log10": mean_or_nan(np.abs(err)),
            "within_1oom": mean_or_nan(np.abs(err) <= 1.0),
            "underestimation": mean_or_nan(f < t),
            "coverage": mean_or_nan(covered),
            "median_width_log10": float(np.median(width)) if width.size else float("nan"),
            "trials": int(ok.sum()),
            "failed": int((~ok).sum()),
        }


@dataclass
class BacktestResult:
    """Every cell of a backtest, the seconds each method took, and the settings."""

    cells: list[Cell]
    seconds: dict[str, float]
    settings: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One plain-data row per (method, risk, m, n) with :data:`ROW_KEYS` plus trials, failed and tau."""
        out = []
        for c in self.cells:
            row = {"method": c.method, "risk": c.risk, "m": c.m, "n": c.n, **c.metrics()}
            if c.risk == "behavior_frequency":
                row["tau"] = self.settings["tau"]
            out.append(row)
        return out


@dataclass
class TrialFits:
    """One :class:`Fit` per trial (None where the fit fails) and, where possible, the batched point model.

    The batched model (one replicate per trial, from one ``fit_sorted`` call) exists when the estimator fits
    many rows at once; it gives the point forecast of every risk whose point rule is the point fit. Other
    point forecasts (a posterior mean or quantile) come from each trial's Fit.
    """

    fits: list[Fit | None]
    batch: PsiDistribution | None
    estimator: TailEstimator

    @classmethod
    def fit(
        cls, method: str, logp: np.ndarray, *, n_draws: int = 100, seed: int = 0, params: dict | None = None
    ) -> TrialFits:
        """Fit ``method`` to every row of ``logp`` (trials, m); trial t's intervals use seed + t."""
        params = params or {}
        estimator = make_estimator(method, **params)
        batch = None
        if estimator.data_kind == "exact":
            try:
                batch = estimator.fit_sorted(-np.sort(-psi_from_logp(logp), axis=1))
            except ForecastError:
                batch = None  # an estimator that fits one sample at a time (gpd-bayes): loop below
        fits: list[Fit | None] = []
        for t, row in enumerate(logp):
            scores = Scores.from_logp(row)
            try:
                if batch is not None:
                    estimator.check(scores)
                    fits.append(
                        Fit(scores, estimator, batch.take(np.array([t])), method, n_draws=n_draws, seed=seed + t)
                    )
                else:
                    fits.append(fit_tail(scores, method, n_draws=n_draws, seed=seed + t, **params))
            except ForecastError:
                fits.append(None)
        return cls(fits, batch, estimator)

    def forecast(self, risk: str, x: np.ndarray, level: float | None = 0.9) -> tuple[np.ndarray, ...]:
        """(point, low, high) of ``risk`` at each x, each (trials, len(x)); NaN where a fit or interval fails.

        With ``level=None`` no intervals are computed and low/high are NaN.
        """
        shape = (len(self.fits), len(x))
        point, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        batched = self.batch is not None and self.estimator.point_rule(risk) is None
        if batched and self.batch is not None:
            point = RISKS[risk].compute(self.batch, check_argument(risk, x))
        for t, fit in enumerate(self.fits):
            if fit is None:
                point[t] = np.nan
                continue
            try:
                if not batched:
                    point[t] = np.atleast_1d(fit.forecast(risk, x))
                if level is not None:
                    low[t], high[t] = (np.atleast_1d(v) for v in fit.interval(risk, x, level))
            except ForecastError:  # too few usable replicate fits: this trial has no interval
                low[t] = high[t] = np.nan
        return point, low, high


def _risk_args(risk: str, n: np.ndarray, tau: float) -> np.ndarray:
    return np.array([tau]) if RISKS[risk].argument == "tau" else n


def _cells(
    method: str, splits: Splits, m: int, tau: float, level: float, n_draws: int, seed: int, params: dict
) -> Iterator[Cell]:
    fits = TrialFits.fit(method, splits.eval_logp[:, :m], n_draws=n_draws, seed=seed, params=params)
    for risk in RISK_NAMES:
        f, lo, hi = fits.forecast(risk, _risk_args(risk, splits.n, tau), level if n_draws else None)
        for j, n in enumerate(splits.n):
            col = 0 if RISKS[risk].argument == "tau" else j
            # a fraction below one query in n cannot be observed on n queries: floor both sides at 1/n
            floor = 1.0 / n if risk == "behavior_frequency" else _TINY
            yield Cell(method, risk, m, int(n), f[:, col], lo[:, col], hi[:, col], splits.truth[risk][:, j], floor)


def backtest(
    logp: ArrayLike,
    methods: Sequence[str],
    m: Sequence[float],
    n: Sequence[float],
    *,
    trials: int = 500,
    tau: float = 0.5,
    level: float = 0.9,
    n_draws: int = 100,
    seed: int = 0,
    params: dict | None = None,
) -> BacktestResult:
    """Backtest ``methods`` on the pool ``logp`` (1-D natural-log probabilities): see the module docstring.

    >>> import numpy as np
    >>> pool = -np.exp(-np.random.default_rng(0).gumbel(size=3000))
    >>> res = backtest(pool, ["gumbel-ols"], m=[100], n=[1000], trials=20, n_draws=50)
    >>> sorted(res.rows()[0])[:4]
    ['coverage', 'failed', 'm', 'mae_log10']
    """
    pool = Scores.from_logp(logp).logp
    assert pool is not None  # from_logp always sets it
    ms, ns = _sizes("m", m, 2), np.asarray(_sizes("n", n, 1), dtype=float)
    if trials < 1:
        raise InputError(f"trials must be >= 1, got {trials}")
    check_argument("behavior_frequency", tau)
    splits = draw_splits(pool, max(ms), ns, trials, tau, np.random.default_rng(seed))
    cells: list[Cell] = []
    seconds: dict[str, float] = {}
    for method in methods:
        estimator = make_estimator(method, **(params or {}))  # a bad name or parameter fails before any work
        if n_draws < MIN_DRAWS and any(estimator.point_rule(r) for r in RISK_NAMES):
            raise InputError(
                f"method {method!r} forecasts from its draws, so it needs n_draws >= {MIN_DRAWS} "
                f"(--draws), got {n_draws}"
            )
        start = time.perf_counter()
        for mm in ms:
            cells += _cells(method, splits, mm, tau, level, n_draws, seed, params or {})
        seconds[method] = time.perf_counter() - start
    settings = {"pool": len(pool), "trials": trials, "tau": tau, "level": level, "n_draws": n_draws, "seed": seed}
    return BacktestResult(cells, seconds, settings)


def forecast_vs_actual(result: BacktestResult, max_points: int = 300) -> bytes:
    """PNG bytes: forecast against actual per risk (log-log) at the largest m and n, one colour per method.

    The diagonal is a perfect forecast; the shaded band is within one order of magnitude.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, n = max(c.m for c in result.cells), max(c.n for c in result.cells)
    risks = list(dict.fromkeys(c.risk for c in result.cells))
    fig, axes = plt.subplots(1, len(risks), figsize=(4.2 * len(risks), 4.2), squeeze=False)
    for ax, risk in zip(axes[0], risks):
        cells = [c for c in result.cells if c.risk == risk and c.m == m and c.n == n]
        for c in cells:
            ok = np.isfinite(c.forecast)
            f, t = np.maximum(c.forecast[ok], c.floor)[:max_points], np.maximum(c.truth[ok], c.floor)[:max_points]
            ax.scatter(t, f, s=6, alpha=0.5, label=c.method)
        lo, hi = ax.get_xlim()[0], 1.0
        grid = np.geomspace(max(lo, 1e-300), hi, 50)
        ax.plot(grid, grid, "k-", lw=0.8)
        ax.fill_between(grid, grid / 10, grid * 10, color="0.85", zorder=0)
        ax.set(xscale="log", yscale="log", xlabel="actual", ylabel="forecast", title=f"{risk}\nm = {m}, n = {n:,}")
    axes[0][0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _sizes(name: str, values: Sequence[float], low: int) -> list[int]:
    """Whole, sorted, distinct sizes >= low; anything else is an InputError naming the option."""
    out = []
    for v in values:
        if not np.isfinite(v) or v < low or v != int(v):
            raise InputError(f"--{name} must be whole numbers >= {low}, got {v!r}")
        out.append(int(v))
    if not out:
        raise InputError(f"give at least one --{name}")
    return sorted(set(out))


__all__ = [
    "RISK_NAMES",
    "ROW_KEYS",
    "BacktestResult",
    "Cell",
    "Splits",
    "TrialFits",
    "backtest",
    "draw_splits",
    "forecast_vs_actual",
    "mean_or_nan",
    "realized_truths",
]
