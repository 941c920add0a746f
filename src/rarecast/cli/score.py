"""``rarecast score``: measure a behavior on a query set with a model and store the results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rarecast.cli.app import app

if TYPE_CHECKING:
    from rarecast.backends.base import Backend
    from rarecast.elicitation.ray_engine import RayEngine


@app.command("score")
def score_command(
    queries: Path = typer.Argument(..., help="Query file: .jsonl, .csv, .parquet or .txt (one prompt a line)."),
    model: str = typer.Option("hf:smollm2", "--model", "-m", help="Model string, e.g. hf:smollm2."),
    behavior: Path = typer.Option(..., "--behavior", "-b", help="Behavior YAML file."),
    store: Path = typer.Option(..., "--store", "-s", help="SQLite results store (created if missing)."),
    dtype: str = typer.Option("fp32", "--dtype", help="hf backend precision: fp32 (exact) or bf16 (faster)."),
    batch_tokens: int | None = typer.Option(
        None, "--batch-tokens", help="Token budget per forward pass (hf default: 2048 on a CPU, 16384 on CUDA)."
    ),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="Queries per committed chunk."),
    device: str | None = typer.Option(None, "--device", help="hf backend device: cpu or cuda."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a live progress bar; the end-of-run summary is printed either way."
    ),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (Ray Data actors)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address; default: a local Ray."),
    workers: int = typer.Option(2, "--workers", help="Ray scorer actors (one model each)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="GPUs per Ray actor."),
    cpus_per_worker: int = typer.Option(1, "--cpus-per-worker", help="CPUs (torch threads) per Ray actor."),
    adaptive: bool = typer.Option(
        False,
        "--adaptive",
        help="Sampled behaviors: sample in rounds and stop "
        "queries that cannot reach the tail; the behavior's k is the per-query cap.",
    ),
    adaptive_first: int = typer.Option(10, "--adaptive-first", help="Samples per query in the first round."),
    adaptive_confidence: float = typer.Option(0.9, "--adaptive-confidence", help="One-sided bound level."),
    max_failures: str | None = typer.Option(
        None,
        "--max-failures",
        help="Failed queries the run tolerates: a count (5) or a fraction of the queries "
        "(0.1). More, and the run exits with status 1 (what was scored stays stored). Default: fail only when "
        "every query failed.",
    ),
) -> None:
    """Score QUERIES with MODEL for BEHAVIOR into STORE; a rerun skips rows already stored.

    Queries that fail are recorded in the store's failures table and named in the end-of-run summary (the most
    common reason, with its count); a rerun tries them again.
    """
    from rarecast.backends import get_backend
    from rarecast.elicitation.behaviors import load_behavior
    from rarecast.elicitation.failures import FailureLimit
    from rarecast.elicitation.scoring import score
    from rarecast.errors import InputError
    from rarecast.queries import load_queries
    from rarecast.store import Store, check_store_file

    # Read and check every input before touching the store or loading a model: bad input writes nothing.
    limit = FailureLimit.parse(max_failures, name="--max-failures")
    qs = load_queries(queries)
    beh = load_behavior(behavior)
    if batch_tokens is not None and batch_tokens < 1:
        raise InputError("--batch-tokens must be >= 1")
    if chunk_size is not None and chunk_size < 1:
        raise InputError("--chunk-size must be >= 1")
    if engine not in ("local", "ray"):
        raise InputError(f"--engine must be local or ray, got {engine!r}")
    policy = _adaptive_policy(beh, adaptive_first, adaptive_confidence) if adaptive else None
    check_store_file(store)  # a store path that is not a store fails here, before the model loads
    opts: dict[str, Any] = {}
    if model.startswith("hf:"):
        opts = {"dtype": dtype, "device": device}
        if batch_tokens is not None:
            opts["batch_tokens"] = batch_tokens
    runner: Backend | RayEngine
    if engine == "ray":
        from rarecast.elicitation.ray_engine import RayEngine

        runner = RayEngine(
            model,
            opts,
            address=address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker,
        )
    else:
        runner = get_backend(model, **opts)
    with Store(store) as st:
        # --no-progress hides the bar only: the end-of-run summary is printed either way
        score(
            qs,
            runner,
            beh,
            st,
            policy=policy,
            chunk_size=chunk_size,
            progress=progress,
            report=True,
            max_failures=limit,
        )


def _adaptive_policy(behavior, first: int, confidence: float):
    """The adaptive policy for a sampled behavior: its k is the cap on samples per query."""
    from rarecast.elicitation.adaptive import Adaptive, AdaptivePlan
    from rarecast.errors import InputError

    if behavior.kind != "sampled":
        raise InputError("--adaptive applies to sampled behaviors only")
    return Adaptive(AdaptivePlan(first=min(first, behavior.k), max_trials=behavior.k, confidence=confidence))
