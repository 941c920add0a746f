"""``rarecast export``: write one run of a store as JSONL or Parquet, one row per query."""

from __future__ import annotations

from pathlib import Path

import typer

from rarecast.cli.app import app


@app.command("export")
def export_command(
    store: Path = typer.Argument(..., help="SQLite results store written by `rarecast score`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .jsonl or .parquet."),
    behavior: str | None = typer.Option(None, "--behavior", help="Behavior name or id, if the store holds several."),
    model: str | None = typer.Option(None, "--model", help="Model string, if the store holds several."),
) -> None:
    """Export STORE to OUT: query_id, logp (or successes and trials), and provenance per row."""
    from rarecast.store import open_existing

    with open_existing(store) as st:
        n = st.export(out, behavior=behavior, model=model)
    typer.echo(f"wrote {n} rows to {out}", err=True)
