"""Checks of a fitted tail that a user should see before trusting a forecast."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy.special import digamma
from scipy.stats import f as f_dist

from rarecast.errors import ForecastError, RarecastWarning
from rarecast.forecasting.risks import worst_query_risk
from rarecast.forecasting.tail.base import resolve_k
from rarecast.forecasting.tail.gpd import shape_test_pvalue

if TYPE_CHECKING:
    from rarecast.forecasting.fit import Fit
    from rarecast.forecasting.tail.model import TailModel


@dataclass
class Diagnostics:
    """What the fit rests on and how much to trust it; ``warnings`` holds the plain-language concerns."""

    method: str
    m: int
    params: dict
    tail_decays: bool
    tail_size: int | None = None
    tail_scale: float | None = None
    tail_shape: float | None = None
    shape_test_pvalue: float | None = None
    top_gap_pvalue: float | None = None
    tail_r2: float | None = None
    stability_n: float | None = None
    stability_over_k: dict[int, float] = field(default_factory=dict)
    stability_spread_log10: float | None = None
    top_ties: int = 0
    zero_probability: int = 0
    certain: int = 0
    queries_with_successes: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(fit: Fit) -> Diagnostics:
    """Compute :class:`Diagnostics` for a fit (exact scores get tail tests; counts get success counts)."""
    est, scores = fit.estimator, fit.scores
    model = fit.model
    diag = Diagnostics(method=fit.method, m=scores.m, params=est.params(), tail_decays=bool(model.decays()[0]))
    if hasattr(model, "sigma"):
        # a mixture tail reports its mixture means; a plug-in's model with a sigma is read as a TailModel too
        tail = cast("TailModel", model)
        assert tail.mix is not None  # TailModel.__post_init__ fills it
        diag.tail_scale = float(np.sum(tail.mix[0] * tail.sigma[0]))
        diag.tail_shape = float(np.sum(tail.mix[0] * tail.xi[0]))
    if scores.kind == "exact":
        _exact_checks(fit, diag)
    else:
        assert scores.successes is not None  # counts scores hold successes
        diag.queries_with_successes = int(np.sum(scores.successes > 0))
        k = resolve_k(est.params().get("k", "auto"), scores.m)
        if diag.queries_with_successes < k:
            diag.warnings.append(
                f"only {diag.queries_with_successes} queries had a success, fewer than the tail size {k}"
            )
    _stability(fit, diag)
    return diag


def _exact_checks(fit: Fit, diag: Diagnostics) -> None:
    logp = fit.scores.logp
    assert logp is not None  # only exact scores get these checks
    diag.zero_probability = int(np.sum(logp == -np.inf))
    diag.certain = int(np.sum(logp == 0))
    psi = np.sort(fit.scores.psi)[::-1]
    k = min(resolve_k(fit.estimator.params().get("k", "auto"), len(psi)), len(psi) - 1)
    diag.tail_size = k
    top = psi[: k + 1]
    if not np.isfinite(top).all():
        diag.warnings.append("some of the top scores are p = 0 or p = 1; the tail is degenerate")
        return
    diag.top_ties = int(len(top) - len(np.unique(top)))
    if diag.top_ties:
        diag.warnings.append(f"{diag.top_ties} ties among the top {k + 1} scores: a floor or rounded scores?")
    excess = (top[:k] - top[k])[None, :]
    if excess.max() > 0:
        diag.shape_test_pvalue = float(shape_test_pvalue(excess)[0])
        if diag.shape_test_pvalue < 0.05:
            advice = (
                ""
                if fit.method == "gpd"
                else ("; compare the gpd method, which fits the shape freely (CLI: --method gpd; Python: method='gpd')")
            )
            diag.warnings.append(
                f"the tail's shape differs from the Gumbel-tail assumption (GPD test p = "
                f"{diag.shape_test_pvalue:.3f}){advice}"
            )
    diag.top_gap_pvalue = top_gap_pvalue(top)
    if diag.top_gap_pvalue is not None and diag.top_gap_pvalue < 0.01:
        diag.warnings.append(
            f"the largest score stands apart from the rest of the tail (gap test p = {diag.top_gap_pvalue:.2g}): "
            "a rare mode, such as a jailbreak or an injection that few queries carry, which one evaluation "
            "query barely shows; other such queries may reach higher than the fit says, so read the top queries "
            "and take the upper end of the worst-query interval, not the point forecast (in rarecast's benchmark, "
            "flagged forecasts ran low 28% to 53% of the time and their 90% intervals still held the realized "
            "maximum 94% to 100% of the time; docs/rare-mode-signal.md)"
        )
    far = worst_query_risk(fit.model, np.array([1e2, 1e4]) * len(psi))[0]
    top_p = float(np.exp(logp.max()))
    if np.allclose(far, top_p, rtol=1e-6):
        diag.warnings.append(
            f"the fitted tail ends at the largest observed score (a bounded tail), so the forecast is pinned at "
            f"the observed maximum p = {top_p:.3g} at every n: it cannot exceed what the evaluation saw"
        )
    y = digamma(np.arange(1, k + 1)) - digamma(len(psi) + 1)
    diag.tail_r2 = float(np.corrcoef(top[:k], y)[0, 1] ** 2) if np.ptp(top[:k]) > 0 else None


def top_gap_pvalue(top_desc: np.ndarray) -> float | None:
    """p-value that the gap between the two largest psi (of the k+1 largest, descending) fits one
    exponential tail.

    Above a threshold, an exponential tail's normalized spacings j * (psi_(j) - psi_(j+1)) are independent
    and identically exponential (Renyi's representation), so the top spacing over the mean of the other
    k - 1 follows F(2, 2(k - 1)). A rare mode, one query far above the rest (a jailbreak that one query in
    a thousand carries), shows as a wide top gap; a tail that bends down narrows it. Only the top gap is
    tested, so no multiple-testing correction dilutes the case that matters. How often it fires on real and
    synthetic pools: docs/rare-mode-signal.md. None when fewer than three spacings or tied scores leave no
    test.
    """
    k = len(top_desc) - 1
    spacings = np.arange(1, k + 1) * -np.diff(top_desc)
    rest = spacings[1:].mean() if k >= 3 else 0.0
    if rest <= 0:
        return None
    return float(f_dist.sf(spacings[0] / rest, 2, 2 * (k - 1)))


def _stability(fit: Fit, diag: Diagnostics) -> None:
    """Worst-query forecast at 100 m queries when the tail size is halved and doubled."""
    params = fit.estimator.params()
    if "k" not in params:
        return
    base_k = diag.tail_size or resolve_k(params["k"], fit.scores.m)
    n = 100.0 * fit.scores.m
    diag.stability_n = n
    for k in sorted({max(5, base_k // 2), base_k, min(2 * base_k, fit.scores.m - 2)}):
        try:
            with warnings.catch_warnings():  # the user's own fit has already said what its data lack
                warnings.simplefilter("ignore", RarecastWarning)
                est = type(fit.estimator)(**{**params, "k": k})
                diag.stability_over_k[k] = float(worst_query_risk(est.fit_point(fit.scores), np.array([n]))[0, 0])
        except ForecastError:
            continue
    vals = np.array([v for v in diag.stability_over_k.values() if v > 0])
    if len(vals) >= 2:
        diag.stability_spread_log10 = float(np.log10(vals.max()) - np.log10(vals.min()))
        if diag.stability_spread_log10 > 1:
            diag.warnings.append(
                f"the forecast at n = {n:.0e} moves by {diag.stability_spread_log10:.1f} orders of magnitude "
                "as the tail size changes; treat it as rough"
            )
