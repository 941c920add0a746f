"""``rarecast allocate``: which query generator to spend a red-teaming budget on, and how often that choice is right."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rarecast.cli.app import app
from rarecast.errors import InputError
from rarecast.evaluation.allocate import Allocation, Generator, allocate, backtest_allocation
from rarecast.forecasting.tail import methods
from rarecast.store.score_files import read_scores


def _generators(files: list[str], costs: list[float]) -> list[Generator]:
    if len(files) < 2:
        raise InputError("give score files from at least two generators")
    if len(costs) != len(files):
        raise InputError(f"give one --cost per score file: {len(files)} files, {len(costs)} costs")
    return [Generator(Path(f).stem, read_scores(f)[0], c) for f, c in zip(files, costs)]


@app.command("allocate")
def allocate_command(
    scores: list[str] = typer.Argument(..., help="one score file per generator (.jsonl, .csv, .parquet, .db)"),
    cost: list[float] = typer.Option([], "--cost", help="cost per query of each generator, in file order (repeatable)"),
    budget: list[float] = typer.Option(..., "--budget", help="total budget (repeatable)"),
    method: str | None = typer.Option(None, "--method", help=f"estimator: {', '.join(methods())}"),
    tau: float = typer.Option(0.5, "--tau", help="threshold for behavior frequency"),
    level: float = typer.Option(0.9, "--level", help="interval level"),
    run_backtest: bool = typer.Option(False, "--backtest", help="treat the files as pools and backtest the choice"),
    m: int = typer.Option(300, "--m", help="with --backtest: evaluation queries per generator"),
    trials: int = typer.Option(200, "--trials", help="with --backtest: random splits per budget"),
    margin: float = typer.Option(
        0.3, "--margin", help="with --backtest: decades between the top two realized maxima for the choice to matter"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Forecast each generator's worst-query risk at the queries the budget buys and recommend one."""
    gens = _generators(scores, cost)
    if run_backtest:
        pools = [g.scores.logp for g in gens if g.scores.logp is not None]
        if len(pools) < len(gens):
            raise InputError("--backtest needs exact log-probabilities in every file")
        rows = backtest_allocation(
            pools,
            [g.cost for g in gens],
            budget,
            m=m,
            trials=trials,
            method=method or "gumbel-ols",
            margin=margin,
        )
        _emit(rows, as_json, lambda: print_decisions(rows, gens, method or "gumbel-ols", Console()))
        return
    results = [allocate(gens, b, method=method, tau=tau, level=level) for b in budget]

    def show() -> None:
        for r in results:
            print_allocation(r, Console())

    _emit([r.to_dict() for r in results], as_json, show)


def _emit(data, as_json: bool, show) -> None:
    if as_json:
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        show()


def print_allocation(result: Allocation, console: Console) -> None:
    """One table per budget: each generator's queries, forecasts and intervals; the choice is marked."""
    table = Table(title=f"budget {result.budget:g}: {result.method}, {result.level:.0%} intervals")
    for col in (
        "generator",
        "cost",
        "queries",
        "worst-query risk",
        "interval",
        f"frequency p > {result.tau:g}",
        "interval",
    ):
        table.add_column(col, justify="left" if col == "generator" else "right")
    for f in result.forecasts:
        mark = " (recommended)" if f.name == result.choice else ""
        w, q = f.worst_query_risk, f.behavior_frequency
        table.add_row(
            f.name + mark,
            f"{f.cost:g}",
            f"{f.queries:,}",
            f"{w[0]:.3g}",
            f"{w[1]:.3g} to {w[2]:.3g}",
            f"{q[0]:.3g}",
            f"{q[1]:.3g} to {q[2]:.3g}",
        )
    console.print(table)


def print_decisions(rows: list[dict], gens: list[Generator], method: str, console: Console) -> None:
    """The backtest of the choice: accuracy per budget, overall and where the choice mattered."""
    table = Table(title=f"allocation backtest ({method}): " + " vs ".join(g.name for g in gens))
    for col in ("budget", "queries", "accuracy", "choice mattered", "accuracy where it mattered", "trials"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['budget']:g}",
            " / ".join(f"{q:,}" for q in r["queries"]),
            f"{r['accuracy']:.0%}",
            f"{r['mattered']:.0%}",
            f"{r['accuracy_mattered']:.0%}",
            str(r["trials"]),
        )
    console.print(table)
