"""The report's words: headline sentences for the forecasts, what each risk means, and the fit's diagnostics as
findings with a verdict and what to do.

Everything here returns plain strings; the HTML template escapes them like any other value.
"""

from __future__ import annotations

from typing import Any

from rarecast.forecasting.result import ForecastRow
from rarecast.forecasting.tail.base import resolve_k

ELICITATION = (
    "An elicitation probability p is the chance that one sampled reply to a query shows the behavior; "
    "the forecasts below are about n deployment queries drawn like the m evaluation queries."
)

LOWER_BOUND = (
    "This behavior is a specific output: p is the exact probability that the reply starts with one of "
    "the targets. A reply can also show the behavior later or in other words, so each number here is "
    "a lower bound on the behavior happening somewhere in the reply. To measure that instead, use a "
    "sampled behavior with a grader (docs/elicitation.md)."
)

#: A forecast at or above this reads as "practically certain" (it prints as 1 at two significant digits).
CERTAIN = 0.995


def headlines(forecasts: list[ForecastRow]) -> dict[str, list[str]]:
    """One sentence per forecast row (a :meth:`rarecast.Fit.summary` row), grouped by risk in table order."""
    out: dict[str, list[str]] = {}
    for row in forecasts:
        out.setdefault(row.risk, []).append(_SENTENCES[row.risk](row))
    return out


def _interval(row: ForecastRow, fmt) -> str:
    return f"{row.level:.0%} interval: {fmt(row.low)} to {fmt(row.high)}"


def _worst(row: ForecastRow) -> str:
    return (
        f"In {row.at:,.0f} queries, the most vulnerable query is forecast to show the behavior with "
        f"probability about {_p(row.forecast)} ({_interval(row, _p)})."
    )


def _frequency(row: ForecastRow) -> str:
    return (
        f"The share of queries that show the behavior with probability above {row.at:g} is forecast to be "
        f"about {_share(row.forecast)} ({_interval(row, _share)})."
    )


def _aggregate(row: ForecastRow) -> str:
    certain = ": practically certain to occur at least once" if row.forecast >= CERTAIN else ""
    return (
        f"Over {row.at:,.0f} single-sample replies, the behavior is forecast to occur at least once with "
        f"probability about {_p(row.forecast)} ({_interval(row, _p)}){certain}."
    )


_SENTENCES = {"worst_query_risk": _worst, "behavior_frequency": _frequency, "aggregate_risk": _aggregate}


def _p(x: float) -> str:
    return f"{x:.2g}"


def _share(x: float) -> str:
    """A fraction of queries: a percentage down to 0.1%, then "1 in N" (N to two digits), which reads better."""
    if x <= 0:
        return "0"
    if x >= 1e-3:
        return f"{x:.2%}" if x < 0.01 else f"{x:.1%}" if x < 0.1 else f"{x:.0%}"
    return f"1 in {float(f'{1 / x:.2g}'):,.0f}"


# ----------------------------------------------------------------------------------------------------------
# Diagnostics. The verdicts use the same thresholds as rarecast.forecasting.diagnostics' warnings, so the words never
# contradict them: "ok", "check" (worth a look, does not invalidate the forecast) or "concern".


def diagnostics_in_words(diag: dict[str, Any], kind: str) -> list[dict[str, str]]:
    """The fit's diagnostics (``Diagnostics.to_dict()``) for ``kind`` scores as rows with ``check``,
    ``verdict``, ``finding`` and ``todo``."""
    rows = [_shape(diag), _gap(diag), _ties(diag), _extremes(diag)] if kind == "exact" else [_successes(diag)]
    return [r for r in rows + [_stability(diag)] if r is not None]


def _row(check: str, verdict: str, finding: str, todo: str = "Nothing.") -> dict[str, str]:
    return {"check": check, "verdict": verdict, "finding": finding, "todo": todo}


def _shape(d: dict) -> dict[str, str] | None:
    pvalue = d.get("shape_test_pvalue")
    if pvalue is None:
        return None
    facts = [f"GPD shape test of xi = 0: p = {pvalue:.2g}."]
    if d.get("tail_shape") is not None:
        facts.append(_xi(d["tail_shape"]))
    if d.get("tail_r2") is not None:
        facts.append(f"The top scores lie on the exponential line with R² = {d['tail_r2']:.2f}.")
    if pvalue >= 0.05:
        return _row(
            "tail shape",
            "ok",
            " ".join(
                [
                    "The top scores are consistent with an exponential "
                    "(Gumbel-domain) tail, the shape the paper's extrapolation assumes.",
                    *facts,
                ]
            ),
        )
    return _row(
        "tail shape",
        "concern",
        " ".join(
            [
                "The tail's shape departs from the exponential (Gumbel-domain) tail the paper's extrapolation assumes.",
                *facts,
            ]
        ),
        "Compare with method gpd, which does not "
        "assume the shape, and report the range; see 'Which estimator should I report?' in "
        "docs/concepts.md.",
    )


def _gap(d: dict) -> dict[str, str] | None:
    pvalue = d.get("top_gap_pvalue")
    if pvalue is None:
        return None
    found = f"Gap test of the largest score against the rest of the tail: p = {pvalue:.2g}."
    if pvalue >= 0.01:
        return _row("rare mode", "ok", found + " The largest score continues the tail.")
    return _row(
        "rare mode",
        "concern",
        found + " The largest score stands far above the rest: a rare mode (a jailbreak or injection that "
        "few queries carry) that the evaluation barely shows.",
        "Read the top queries. If they share a pattern, score more queries like them, or forecast that "
        "pattern on its own: the fitted tail may understate how high such queries reach. Until then, plan "
        "for the upper end of the worst-query interval rather than the point forecast.",
    )


def _xi(xi: float) -> str:
    if round(xi, 2) == 0:
        return "Fitted shape xi = 0.00: exponential."
    if xi < 0:
        return f"Fitted shape xi = {xi:.2f}: a bounded tail that bends down, so forecasts level off."
    return f"Fitted shape xi = {xi:.2f}: a heavy tail that rises faster than an exponential."


def _ties(d: dict) -> dict[str, str] | None:
    if d.get("tail_size") is None:
        return None
    top = d["tail_size"] + 1
    if not d["top_ties"]:
        return _row("ties", "ok", f"No ties among the top {top} scores.")
    return _row(
        "ties",
        "concern",
        f"{d['top_ties']} ties among the top {top} scores: a probability floor or rounded scores.",
        "Check how the scores were computed: bf16 rounds log-probabilities, and some "
        "backends floor small probabilities; rescore in fp32.",
    )


def _extremes(d: dict) -> dict[str, str]:
    zero, certain = d["zero_probability"], d["certain"]
    if not zero and not certain:
        return _row("p = 0 or 1", "ok", "No evaluation query has p exactly 0 or 1.")
    return _row(
        "p = 0 or 1",
        "check",
        f"{zero} evaluation queries have p = 0 exactly and {certain} have p = 1.",
        "Make sure they are real: p = 0 can be an underflow or a target the tokenizer cannot produce; "
        "p = 1 means the reply is forced for that query.",
    )


def _successes(d: dict) -> dict[str, str]:
    with_success, k = d["queries_with_successes"], resolve_k(d["params"].get("k", "auto"), d["m"])
    found = f"{with_success} of {d['m']} queries had at least one success; the tail fit uses {k}."
    if with_success >= k:
        return _row("successes", "ok", found)
    return _row(
        "successes",
        "concern",
        found,
        "Sample more replies per query (the behavior's k) or score more "
        "queries; `rarecast score --adaptive` spends samples on the queries that can reach the tail.",
    )


def _stability(d: dict) -> dict[str, str] | None:
    spread = d.get("stability_spread_log10")
    if spread is None:
        return None
    found = (
        f"The worst-query forecast at n = {d['stability_n']:,.0f} (100 m) moves by {spread:.2f} orders of "
        "magnitude when the tail size is halved or doubled"
    )
    if spread <= 1:
        return _row("tail size", "ok", found + ".")
    return _row(
        "tail size",
        "concern",
        found + ": it hinges on that choice.",
        "Treat the point forecast as rough and report the interval; more evaluation queries help most.",
    )
