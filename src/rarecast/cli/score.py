"""``rarecast score``: measure a behavior on a query set with a model and store the results."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rarecast.cli import app


@app.command("score")
def score_command(
    queries: Path = typer.Argument(..., help="Query file: .jsonl, .csv, .parquet or .txt (one prompt a line)."),
    model: str = typer.Option("hf:smollm2", "--model", "-m", help="Model string, e.g. hf:smollm2."),
    behavior: Path = typer.Option(..., "--behavior", "-b", help="Behavior YAML file."),
    store: Path = typer.Option(..., "--store", "-s", help="SQLite results store (created if missing)."),
    dtype: str = typer.Option("fp32", "--dtype", help="hf backend precision: fp32 (exact) or bf16 (faster)."),
    batch_tokens: Optional[int] = typer.Option(None, "--batch-tokens", help="Token budget per forward pass."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Queries per committed chunk."),
    device: Optional[str] = typer.Option(None, "--device", help="hf backend device: cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar and summary."),
) -> None:
    """Score QUERIES with MODEL for BEHAVIOR into STORE; a rerun skips rows already stored."""
    from rarecast.behaviors import load_behavior
    from rarecast.backends import get_backend
    from rarecast.errors import InputError
    from rarecast.queries import load_queries
    from rarecast.scoring import score
    from rarecast.store import Store, check_store_file

    # Read and check every input before touching the store or loading a model: bad input writes nothing.
    qs = load_queries(queries)
    beh = load_behavior(behavior)
    if batch_tokens is not None and batch_tokens < 1:
        raise InputError("--batch-tokens must be >= 1")
    if chunk_size is not None and chunk_size < 1:
        raise InputError("--chunk-size must be >= 1")
    check_store_file(store)  # a store path that is not a store fails here, before the model loads
    opts = {}
    if model.startswith("hf:"):
        opts = {"dtype": dtype, "device": device}
        if batch_tokens is not None:
            opts["batch_tokens"] = batch_tokens
    backend = get_backend(model, **opts)
    with Store(store) as st:
        score(qs, backend, beh, st, batch_tokens=batch_tokens, chunk_size=chunk_size, progress=progress)
