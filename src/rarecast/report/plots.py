"""The report's figures, drawn with matplotlib's Agg backend (no display needed) and returned as PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports are drawn on servers and in CI without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import gammaln

from rarecast.forecasting.result import ForecastResult  # noqa: E402

_BLUE, _ORANGE, _GREY = "#1f5fa8", "#d9541e", "#555555"


def probabilities(scores) -> np.ndarray:
    """Per-query probability: exp(log p) for exact scores, the success fraction s / k for counts."""
    return np.exp(scores.logp) if scores.kind == "exact" else scores.successes / scores.trials


def evaluation_points(fit) -> tuple[np.ndarray, np.ndarray]:
    """The empirical scaling points: the j-th largest evaluation probability plotted at n = m / j.

    Queries with p = 0 (exactly, or no success among k samples) cannot be drawn on log axes.
    """
    p = np.sort(probabilities(fit.scores))[::-1]
    n = fit.scores.m / np.arange(1, len(p) + 1)
    keep = p > 0
    return n[keep], p[keep]


def scaling_plot(fit, result: ForecastResult) -> bytes:
    """Worst-query risk against the number of queries n (log-log): evaluation points, the fitted extrapolation
    with its interval band, and marks at the asked deployment sizes."""
    m = fit.scores.m
    asked = result.rows("worst_query_risk")
    top = max([row.at for row in asked] + [m]) * 10
    grid = np.logspace(np.log10(max(m / 20, 1.0)), np.log10(top), 120)
    level = result.level
    line = np.asarray(fit.worst_query_risk(grid))
    low, high = (np.asarray(v) for v in fit.interval("worst_query_risk", grid, level=level))
    n_pts, p_pts = evaluation_points(fit)
    shown = n_pts >= grid[0]

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.fill_between(grid, low, high, color=_BLUE, alpha=0.18, lw=0, label=f"{level:.0%} interval")
    ax.plot(grid, line, color=_BLUE, lw=2, label=f"forecast ({result.method})")
    ax.scatter(
        n_pts[shown], p_pts[shown], s=18, color="black", zorder=3, label=f"evaluation: j-th largest p of {m} at n = m/j"
    )
    ax.axvline(m, color=_GREY, ls=":", lw=1)
    ax.annotate(
        f"evaluated: m = {m}",
        (m, 0.02),
        xycoords=("data", "axes fraction"),
        rotation=90,
        color=_GREY,
        fontsize=8,
        ha="right",
        va="bottom",
    )
    for row in asked:
        ax.errorbar(
            [row.at],
            [row.forecast],
            yerr=[[row.forecast - row.low], [row.high - row.forecast]],
            fmt="D",
            color=_ORANGE,
            ms=7,
            capsize=4,
            zorder=4,
        )
        ax.annotate(
            f"n = {row.at:.0e}\n{row.forecast:.2g}",
            (row.at, row.forecast),
            textcoords="offset points",
            xytext=(8, -18),
            fontsize=8,
            color=_ORANGE,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    floor = np.nanmin(np.concatenate([low[low > 0], p_pts[shown]])) if np.any(low > 0) else 1e-12
    ax.set_ylim(max(floor / 3, 1e-300), 1.5)
    ax.set_xlabel("number of queries n")
    ax.set_ylabel("worst-query risk (largest p among n)")
    ax.set_title(f"{result.provenance.get('behavior', 'behavior')}: forecast worst-query risk")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def attempts_plot(best, k: float) -> bytes:
    """ASR@N against attempts per query N (log x): the observed share of queries broken within M <= k attempts,
    the best-of-N fit's forecast with its interval band beyond, and the range the counts allow with no shape
    assumed (dashed; at 9 N, since each takes a few linear programs). ``best`` is a :class:`~rarecast.BestOfNFit`."""
    s = best.scores
    grid = np.logspace(0, np.log10(k) + 3, 80)
    line = np.asarray(best.attack_success_rate(grid))
    low, high = (np.asarray(v) for v in best.interval(grid))
    sparse = np.logspace(0, np.log10(k) + 3, 9)
    counts_low, counts_high = (np.asarray(v) for v in best.counts_only_range(sparse))
    seen = np.unique(np.round(np.logspace(0, np.log10(k), 20)))
    # share of queries with a success among M of their attempts, unbiased: 1 - C(k - s, M) / C(k, M)
    observed = [1 - np.mean(np.exp(_log_comb(s.trials - s.successes, M) - _log_comb(s.trials, M))) for M in seen]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.fill_between(
        grid, low, high, color=_BLUE, alpha=0.18, lw=0, label=f"90% interval ({best.n_draws} posterior draws)"
    )
    ax.plot(grid, line, color=_BLUE, lw=2, label=f"forecast ({best.edf:.1f} degrees of freedom)")
    ax.plot(sparse, counts_low, color=_GREY, ls="--", lw=1, label="counts alone: 90% range, any shape of p")
    ax.plot(sparse, counts_high, color=_GREY, ls="--", lw=1)
    ax.scatter(seen, observed, s=18, color="black", zorder=3, label="evaluation: share broken within N attempts")
    ax.axvline(k, color=_GREY, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("attempts per query N")
    ax.set_ylabel("ASR@N (share of queries broken within N attempts)")
    ax.set_title("best-of-N: the attempt axis")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _log_comb(n: np.ndarray, r: float) -> np.ndarray:
    """log C(n, r), -inf where r > n."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(n >= r, gammaln(n + 1) - gammaln(r + 1) - gammaln(np.maximum(n - r, 0) + 1), -np.inf)


def distribution_plot(fit) -> bytes:
    """Histogram of log10 p over the evaluation queries (counts: of s / k); zeros are counted in the title."""
    s = fit.scores
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    p = probabilities(s)
    zeros = int(np.sum(p == 0))
    values = np.log10(p[p > 0])
    if len(values):
        ax.hist(values, bins=min(60, max(10, len(values) // 20)), color=_BLUE, alpha=0.8)
    ax.set_xlabel("log10 p (elicitation probability)")
    ax.set_ylabel("queries")
    note = f"; {zeros} with p = 0 not shown" if zeros else ""
    ax.set_title(f"elicitation probabilities of the {s.m} evaluation queries{note}", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
