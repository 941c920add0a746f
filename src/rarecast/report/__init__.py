"""The forecast report: one self-contained HTML page and the same plots as PNG files beside it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rarecast.forecasting.best_of_n import MIN_QUERIES, fit_best_of_n
from rarecast.forecasting.result import ForecastResult
from rarecast.queries import Query
from rarecast.report.html import render
from rarecast.report.plots import attempts_plot, distribution_plot, scaling_plot


def write_report(fit, result: ForecastResult, queries: Mapping[str, Query], out: str | Path) -> tuple[Path, list[Path]]:
    """Write ``out`` (HTML) and ``<stem>-scaling.png`` / ``<stem>-distribution.png`` beside it (count data:
    also ``<stem>-attempts.png``, the best-of-N forecast along attempts per query).

    ``result`` is the :class:`~rarecast.forecasting.result.ForecastResult` of
    :func:`rarecast.forecasting.fit.forecast_result`; ``queries`` maps query ids to queries for the riskiest-query
    table. Returns the HTML path and the PNG paths.
    """
    out = Path(out)
    plots = {"scaling": scaling_plot(fit, result), "distribution": distribution_plot(fit)}
    if fit.scores.kind == "counts" and fit.scores.m >= MIN_QUERIES and fit.scores.successes.any():
        plots["attempts"] = attempts_plot(fit_best_of_n(fit.scores), float(np.median(fit.scores.trials)))
    paths = []
    for name, png in plots.items():
        path = out.with_name(f"{out.stem}-{name}.png")
        path.write_bytes(png)
        paths.append(path)
    out.write_text(render(result, fit, queries, plots), encoding="utf-8")
    return out, paths


__all__ = ["write_report"]
