"""``rarecast report STORE_OR_SCORES -o report.html``: the HTML report of a forecast."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rarecast.cli.app import app
from rarecast.cli.related import HELP as RELATED_HELP  # forecast.py loads the library for --help already


@app.command("report")
def report_command(
    scores: Path = typer.Argument(..., help="A results store (.db) or a score table (.jsonl/.csv/.parquet)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file; PNG plots go beside it."),
    n: list[float] = typer.Option([], "--n", help="Deployment size (repeatable); default 1e4, 1e6, 1e9."),
    tau: list[float] = typer.Option([], "--tau", help="Behavior-frequency threshold (repeatable); default 0.5."),
    method: str | None = typer.Option(None, "--method", help="Tail estimator (default by score kind)."),
    level: float = typer.Option(0.9, "--level", help="Interval level."),
    queries: Path | None = typer.Option(None, "--queries", help="Query file with the texts to show."),
    model: str | None = typer.Option(None, "--model", help="With a store: which model's scores."),
    behavior: str | None = typer.Option(None, "--behavior", help="With a store: which behavior's scores."),
    related: list[str] = typer.Option([], "--related", help=RELATED_HELP),
) -> None:
    """Fit, forecast and write a self-contained HTML report (the forecast table is printed too)."""
    from rarecast.cli.related import related_settings
    from rarecast.forecasting.fit import DEFAULT_N, DEFAULT_TAU, forecast_result
    from rarecast.queries import load_queries
    from rarecast.report import write_report
    from rarecast.report.console import print_forecast
    from rarecast.store.archive import load_query_texts
    from rarecast.store.score_files import read_scores

    data, provenance = read_scores(scores, model=model, behavior=behavior)
    texts = load_query_texts(scores) if scores.suffix.lower() == ".db" else {}
    if queries is not None:
        texts.update({q.id: q for q in load_queries(queries)})
    pooled, pooled_from = related_settings(
        related, str(scores), data, method=method, behavior=behavior, model=model, k={}
    )
    fit, result = forecast_result(
        data,
        {**provenance, "source": str(scores), **pooled_from},
        n=n or DEFAULT_N,
        tau=tau or DEFAULT_TAU,
        method=method,
        level=level,
        **pooled,
    )
    html, plots = write_report(fit, result, texts, out)
    console = Console()
    print_forecast(result, console)
    console.print(f"report    {html}\nplots     {', '.join(str(p) for p in plots)}", highlight=False, soft_wrap=True)
