"""``rarecast run EXPERIMENT.yaml`` and ``rarecast demo``: the main job end to end."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rarecast.cli.app import app


@app.command("run")
def run_command(
    experiment: Path = typer.Argument(..., help="Experiment YAML: queries, model, behavior, n, tau, out."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (overrides the file's 'out')."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    max_failures: str | None = typer.Option(
        None,
        "--max-failures",
        help="Failed queries the run tolerates: a count (5) or a fraction of the queries "
        "(0.1); more, and the run exits with status 1 before forecasting. Default: the file's max_failures, "
        "else fail only when every query failed.",
    ),
) -> None:
    """Score the experiment's queries (resumably), forecast at its deployment sizes, write the report."""
    from rarecast.elicitation.failures import FailureLimit
    from rarecast.experiment import run_experiment

    limit = FailureLimit.parse(max_failures, name="--max-failures") if max_failures is not None else None
    run_experiment(experiment, out=out, progress=progress, console=Console(), max_failures=limit)


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("rarecast-demo"), "--out", "-o", help="Output folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run the bundled demo offline: can a small assistant be talked into leaking its vault password?"""
    from importlib.resources import as_file, files

    from rarecast.experiment import run_experiment

    console = Console()
    with as_file(files("rarecast") / "data" / "demo") as folder:
        console.print(f"rarecast demo: {folder / 'experiment.yaml'} -> {out}/", highlight=False, soft_wrap=True)
        run_experiment(folder / "experiment.yaml", out=out, progress=progress, console=console)
