"""``rarecast forecast``: fit the tail of a score table and print deployment-risk forecasts."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console

from rarecast.cli.app import app
from rarecast.cli.related import HELP as RELATED_HELP
from rarecast.cli.related import related_settings
from rarecast.errors import InputError
from rarecast.forecasting.best_of_n import best_of_n_result, fit_best_of_n
from rarecast.forecasting.fit import DEFAULT_N, DEFAULT_TAU, check_quantile, forecast_result
from rarecast.forecasting.tail import methods
from rarecast.report.console import print_forecast
from rarecast.store.score_files import read_scores


def _k(value: str | None):
    if value is None or value == "auto":
        return {}
    return {"k": float(value) if "." in value else int(value)}


@app.command()
def forecast(
    scores: str = typer.Argument(..., help="score table: .jsonl, .csv, .parquet, or a .db results store"),
    n: list[float] = typer.Option([], "--n", help="deployment size (repeatable); default 1e4, 1e6, 1e9"),
    tau: list[float] = typer.Option([], "--tau", help="threshold for behavior frequency (repeatable); default 0.5"),
    method: str | None = typer.Option(None, "--method", help=f"estimator: {', '.join(methods())}"),
    k: str | None = typer.Option(None, "--k", help="tail size: auto, a whole number, or a fraction of m"),
    level: float = typer.Option(0.9, "--level", help="interval level"),
    quantile: float | None = typer.Option(
        None,
        "--quantile",
        help="point forecasts at this quantile, strictly between 0 and 1, of each risk's "
        "predictive distribution (e.g. 0.75 for a cautious forecast); default: the method's own rule, for "
        "gpd-bayes and binomial the median (the mean for behavior frequency)",
    ),
    model: str | None = typer.Option(None, "--model", help="with a store: which model's scores"),
    behavior: str | None = typer.Option(None, "--behavior", help="with a store: which behavior's scores"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document instead of a table"),
    related: list[str] = typer.Option([], "--related", help=RELATED_HELP),
    attempts: list[float] = typer.Option(
        [],
        "--attempts",
        help="count data only: also forecast ASR@N, the share of queries that show the behavior "
        "within N attempts each, with its interval and the range the counts allow with no shape assumed "
        "(counts alone; repeatable, e.g. --attempts 1e3 --attempts 1e4)",
    ),
) -> None:
    """Forecast worst-query risk, behavior frequency and aggregate risk at deployment scale."""
    if quantile is not None:  # before reading and fitting, which a bad flag would waste
        check_quantile(quantile, "--quantile")
    data, provenance = read_scores(scores, model=model, behavior=behavior)
    if attempts and data.kind != "counts":
        raise InputError(
            "--attempts needs sampled counts (successes and trials per query); this file holds exact log-probabilities",
            file=str(scores),
        )
    pooled, pooled_from = related_settings(
        related, scores, data, method=method, behavior=behavior, model=model, k=_k(k)
    )
    _, result = forecast_result(
        data,
        {**provenance, **pooled_from},
        n=n or DEFAULT_N,
        tau=tau or DEFAULT_TAU,
        method=method,
        level=level,
        quantile=quantile,
        **_k(k),
        **pooled,
    )
    result.source = str(scores)
    if attempts:
        result.best_of_n = best_of_n_result(fit_best_of_n(data), attempts, level)
    if as_json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_forecast(result, Console())
