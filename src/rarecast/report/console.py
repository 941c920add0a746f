"""The forecast for people at a terminal: the risk table, the fit's diagnostics and its warnings."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rarecast.forecasting.result import ForecastResult


def print_forecast(result: ForecastResult, console: Console) -> None:
    """The forecast table, then the fit's diagnostics and warnings, for people."""
    table = Table(title=f"rarecast forecast: {result.method} on {result.m} {result.kind} scores")
    point = "forecast" if result.quantile is None else f"{result.quantile:g} quantile"
    for col in ("risk", "at", point, f"{result.level:.0%} interval"):
        table.add_column(col, justify="left" if col == "risk" else "right")
    for row in result.forecasts:
        table.add_row(row.label, row.where(), f"{row.forecast:.3g}", f"{row.low:.3g} to {row.high:.3g}")
    console.print(table)
    d = result.diagnostics
    facts = [
        f"tail size k = {d['tail_size']}" if d.get("tail_size") else None,
        f"GPD shape test p = {d['shape_test_pvalue']:.2f}" if d.get("shape_test_pvalue") is not None else None,
        f"spread over k: {d['stability_spread_log10']:.2f} orders" if d.get("stability_spread_log10") else None,
        f"{d['queries_with_successes']} queries with successes"
        if d.get("queries_with_successes") is not None
        else None,
    ]
    console.print("fit: " + "; ".join(f for f in facts if f))
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", markup=True, highlight=False)
    if result.best_of_n is not None:
        print_best_of_n(result.best_of_n, console)


def print_best_of_n(best: dict, console: Console) -> None:
    """The ASR@N table: the share of queries that show the behavior within N attempts each."""
    table = Table(
        title="best-of-N: share of queries broken within N attempts "
        f"(Beta with a smooth correction, {best['edf']:.1f} degrees of freedom)"
    )
    level = f"{best['forecasts'][0]['level']:.0%}"
    for col in ("attempts N", "ASR@N", f"{level} interval", f"counts alone ({level}, any shape)"):
        table.add_column(col, justify="right")
    for row in best["forecasts"]:
        table.add_row(
            f"{row['attempts']:.3g}",
            f"{row['forecast']:.3g}",
            f"{row['low']:.3g} to {row['high']:.3g}",
            f"{row['counts_low']:.3g} to {row['counts_high']:.3g}",
        )
    console.print(table)
    console.print(f"[yellow]note:[/yellow] {best['note']}", markup=True, highlight=False)
