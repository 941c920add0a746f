"""``rarecast import inspect|garak|lm-eval``: other tools' logs -> canonical score tables.

Each command writes what ``rarecast export`` writes (one query per row, ``logp`` or ``successes`` and
``trials``, plus provenance), so ``rarecast forecast``, ``backtest`` and ``report`` read the result unchanged.
A log that holds several runs (garak probes x detectors, inspect tasks x models) gives one file per run,
named ``<OUT stem>.<run>.<suffix>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from rarecast.cli.app import app

import_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Import scores from inspect_ai, garak or lm-evaluation-harness logs.",
)
app.add_typer(import_app, name="import")

_OUT = typer.Option(..., "--out", "-o", help="Output score table: .jsonl or .parquet.")


@import_app.command("inspect")
def inspect_command(
    logs: list[Path] = typer.Argument(..., help="inspect .eval or .json logs; logs of one task and model pool."),
    out: Path = _OUT,
    scorer: str | None = typer.Option(None, "--scorer", help="Scorer to read when samples hold several."),
    success: list[str] | None = typer.Option(
        None, "--success", help="Score value that counts as a success (repeatable); default C, true, 1."
    ),
) -> None:
    """Import inspect logs: epochs of a sample become trials; exact log-probabilities stay exact."""
    from rarecast.integrations.inspect import read_inspect_logs

    _report(read_inspect_logs(logs, scorer=scorer, success=success or None), out)


@import_app.command("garak")
def garak_command(
    report: Path = typer.Argument(..., help="garak report (*.report.jsonl)."),
    out: Path = _OUT,
    threshold: float = typer.Option(0.5, "--threshold", help="Detector score at or above which an output is a hit."),
    probe: str | None = typer.Option(None, "--probe", help="Only this probe (e.g. dan.Dan_11_0)."),
    detector: str | None = typer.Option(None, "--detector", help="Only this detector."),
) -> None:
    """Import a garak report: per attempt, hits of generations; one run per probe and detector."""
    from rarecast.integrations.garak import read_garak_report

    _report(read_garak_report(report, threshold=threshold, probe=probe, detector=detector), out)


@import_app.command("lm-eval")
def lm_eval_command(
    samples: list[Path] = typer.Argument(..., help="lm-evaluation-harness samples_*.jsonl (--log_samples)."),
    out: Path = _OUT,
    choice: str | None = typer.Option(
        None, "--choice", help="Multiple choice: the option index (0-based) or 'target'; needed when docs have several."
    ),
    renormalize: bool = typer.Option(
        True, "--renormalize/--no-renormalize", help="Multiple choice: probability among the options only."
    ),
    model: str | None = typer.Option(None, "--model", help="Model name, when no results_*.json lies beside."),
) -> None:
    """Import lm-eval log-likelihood samples as exact log-probabilities."""
    from rarecast.integrations.lm_eval import read_lm_eval_samples

    _report(read_lm_eval_samples(samples, choice=choice, renormalize=renormalize, model=model), out)


def _report(runs: Sequence, out: Path) -> None:
    """Write the runs and say where each went (stderr, so stdout stays clean for pipes)."""
    from rarecast.integrations import write_runs

    for path, n in write_runs(runs, out):
        typer.echo(f"wrote {n} rows to {path}", err=True)
