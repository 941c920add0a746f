"""``rarecast queries build`` and ``rarecast queries generate``: make query sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from rarecast.cli.app import app

queries_app = typer.Typer(no_args_is_help=True, help="Build or generate query sets.")
app.add_typer(queries_app, name="queries")


@queries_app.command("build")
def build_command(
    spec: Path = typer.Argument(..., help="Query spec YAML: templates with {slots} and filler lists."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL."),
    seed: int | None = typer.Option(None, "--seed", help="Override the spec's sampling seed."),
    max_queries: int | None = typer.Option(None, "--max-queries", help="Override the spec's max_queries."),
) -> None:
    """Render every combination (or a seeded sample), drop duplicates, write JSONL with stable ids."""
    import dataclasses

    from rarecast.errors import InputError
    from rarecast.queries.building import build_queries, load_spec, write_queries

    parsed = load_spec(spec)
    if max_queries is not None and max_queries < 1:
        raise InputError("--max-queries must be >= 1")
    overrides: dict[str, Any] = {k: v for k, v in {"seed": seed, "max_queries": max_queries}.items() if v is not None}
    queries, report = build_queries(dataclasses.replace(parsed, **overrides))
    write_queries(queries, out)
    Console(stderr=True).print(
        f"{spec}: {report.possible:,} combinations possible, {report.drawn:,} drawn (seed {report.seed}), "
        f"{report.duplicates:,} duplicates removed, {report.kept:,} kept -> {out}",
        highlight=False,
        soft_wrap=True,
    )


@queries_app.command("generate")
def generate_command(
    generator: str = typer.Option(..., "--generator", "-g", help="Model string of the query writer."),
    instruction: str = typer.Option(..., "--instruction", "-i", help="What the generator is asked."),
    n: int = typer.Option(..., "-n", help="How many distinct queries the output should hold."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL (appended to; a rerun resumes)."),
    system: str | None = typer.Option(None, "--system", help="System prompt put before each query."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature of the generator."),
    max_tokens: int = typer.Option(96, "--max-tokens", help="Longest generated query, in tokens."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    per_round: int = typer.Option(16, "--per-round", help="Replies sampled per generator call."),
    max_rounds: int = typer.Option(200, "--max-rounds", help="Give up after this many rounds."),
) -> None:
    """Have a model write queries; duplicates are dropped and a rerun only adds what is missing."""
    from rarecast.queries.generation import GenerationRequest, generate_queries

    request = GenerationRequest.from_dict(
        dict(
            generator=generator,
            instruction=instruction,
            n=n,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            per_round=per_round,
            max_rounds=max_rounds,
        )
    )
    report = generate_queries(request, out)
    Console(stderr=True).print(
        f"{out}: {report.existing + report.added} queries ({report.existing} already there, {report.added} new); "
        f"{report.sampled} replies sampled, {report.duplicates} duplicates and {report.empty} empty dropped",
        highlight=False,
    )
