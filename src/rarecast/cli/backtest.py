"""``rarecast backtest``: score forecasts against truth measured on disjoint splits of a scored pool."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rarecast.cli.app import app
from rarecast.errors import InputError
from rarecast.evaluation.backtest import BacktestResult, backtest, forecast_vs_actual
from rarecast.forecasting.tail import DEFAULT_EXACT, methods
from rarecast.store.score_files import read_scores

#: The paper's estimator, its baseline and rarecast's default, side by side.
DEFAULT_METHODS = ("gumbel-ols", "lognormal", DEFAULT_EXACT)


@app.command("backtest")
def backtest_command(
    pool: str = typer.Argument(..., help="scored pool: .jsonl, .csv, .parquet, or a .db results store"),
    m: list[float] = typer.Option([100, 300, 1000], "--m", help="evaluation size (repeatable)"),
    n: list[float] = typer.Option([1e4, 3e4, 9e4], "--n", help="deployment size (repeatable)"),
    trials: int = typer.Option(500, "--trials", help="random splits per (m, n)"),
    method: list[str] = typer.Option(
        [], "--method", help=f"estimator (repeatable): {', '.join(methods())}; default {', '.join(DEFAULT_METHODS)}"
    ),
    tau: float = typer.Option(0.5, "--tau", help="threshold for behavior frequency"),
    level: float = typer.Option(0.9, "--level", help="interval level whose coverage is measured"),
    draws: int = typer.Option(100, "--draws", help="replicate fits per trial for the intervals; 0 skips them"),
    seed: int = typer.Option(0, "--seed", help="seed of the splits and the replicate fits"),
    model: str | None = typer.Option(None, "--model", help="with a store: which model's scores"),
    behavior: str | None = typer.Option(None, "--behavior", help="with a store: which behavior's scores"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON array of rows instead of a table"),
    plot: Path | None = typer.Option(None, "--plot", help="write a PNG of forecast against actual"),
) -> None:
    """Backtest tail estimators: mean absolute log10 error, within one order, underestimation, coverage."""
    if not 0 < level < 1:
        raise InputError(f"--level must lie strictly between 0 and 1, got {level!r}")
    if draws != 0 and draws < 10:
        raise InputError(f"--draws must be 0 (no intervals) or >= 10, got {draws}")
    scores, _ = read_scores(pool, model=model, behavior=behavior)
    if scores.logp is None:
        raise InputError("backtests need exact log-probabilities (a logp or p column); counts have no truth", file=pool)
    result = backtest(
        scores.logp,
        method or list(DEFAULT_METHODS),
        m,
        n,
        trials=trials,
        tau=tau,
        level=level,
        n_draws=draws,
        seed=seed,
    )
    if plot is not None:
        plot.write_bytes(forecast_vs_actual(result))
    if as_json:
        json.dump(result.rows(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_backtest(result, pool, Console())


def print_backtest(result: BacktestResult, source: str, console: Console) -> None:
    """One table of metrics per risk, then each method's time."""
    s = result.settings
    for risk in dict.fromkeys(c.risk for c in result.cells):
        at = f" (tau = {s['tau']:g})" if risk == "behavior_frequency" else ""
        table = Table(title=f"{risk}{at}: {s['trials']} splits of {s['pool']:,} queries in {source}")
        for col in ("method", "m", "n", "MAE log10", "within 1 OOM", "under", f"{s['level']:.0%} coverage", "failed"):
            table.add_column(col, justify="left" if col == "method" else "right")
        for row in result.rows():
            if row["risk"] == risk:
                table.add_row(
                    row["method"],
                    str(row["m"]),
                    f"{row['n']:,}",
                    f"{row['mae_log10']:.2f}",
                    f"{row['within_1oom']:.0%}",
                    f"{row['underestimation']:.0%}",
                    f"{row['coverage']:.0%}",
                    str(row["failed"]),
                )
        console.print(table)
    console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
