"""``rarecast score --engine ray``: scoring on a Ray cluster (or a local Ray instance) with Ray Data.

The driver (the process running ``rarecast score``) owns the store. It asks the store which queries are still
pending, sends only those through ``Dataset.map_batches`` to a pool of scorer actors (each loads the model
once and measures chunks exactly as the local engine does, with the same per-query failure isolation), and
commits every returned chunk in one transaction as it arrives. A killed run therefore keeps every committed
chunk and a rerun sends only what is left, as with the local engine; a chunk in flight is simply scored again.

Workers must see the same model files as the driver (same path or cache); they never touch the store.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from rarecast.elicitation.scoring import (
    FailureLimit,
    FailureTally,
    Progress,
    ScoreSummary,
    check_failures,
    default_chunk_size,
    measure_chunk,
    print_summary,
)
from rarecast.errors import InputError
from rarecast.queries import Query
from rarecast.store import RunKey, Store


def query_record(query: Query) -> dict[str, str]:
    """A query as a Ray Data row (plain strings travel through Arrow blocks)."""
    return {"id": query.id, "query": json.dumps({"messages": query.messages, "prompt": query.prompt})}


def query_from_record(row: dict[str, Any]) -> Query:
    data = json.loads(row["query"])
    messages = tuple(data["messages"]) if data["messages"] is not None else None
    return Query(id=str(row["id"]), messages=messages, prompt=data["prompt"])


class Scorer:
    """A Ray Data actor: one model per actor, scoring one chunk of queries per call."""

    def __init__(self, model: str, backend_opts: dict, behavior, threads: int):
        import torch

        from rarecast.backends import get_backend

        # One actor per CPU share: torch's default (all cores) would oversubscribe a machine with several actors.
        torch.set_num_threads(max(1, threads))
        self.backend = get_backend(model, **backend_opts)
        self.behavior = behavior

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        queries = [query_from_record({"id": i, "query": q}) for i, q in zip(batch["id"], batch["query"])]
        ok, bad = measure_chunk(queries, self.backend, self.behavior)
        ids = [qid for qid, _ in ok] + [qid for qid, _ in bad]
        results = [json.dumps(_outcome_dict(o)) for _, o in ok] + [""] * len(bad)
        errors = [""] * len(ok) + [reason for _, reason in bad]
        return {"id": ids, "result": results, "error": errors}


def _outcome_dict(outcome) -> dict[str, Any]:
    return {"logp": outcome.logp, "successes": outcome.successes, "trials": outcome.trials, "details": outcome.details}


def _run_key(model: str, backend_opts: dict, behavior) -> RunKey:
    """The run's store key, computed where the model can be loaded (a worker, not the driver)."""
    from rarecast.backends import get_backend
    from rarecast.elicitation.behaviors import run_key

    return run_key(get_backend(model, **backend_opts), behavior)


def connect(address: str | None, workers: int, cpus_per_worker: int) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or start a local one."""
    import logging

    import ray

    # The driver prints its own progress bar; Ray Data's per-operator progress lines would bury it.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # A local instance sized for the requested actors (plus one CPU for Ray Data's own tasks).
        cpus = max(os.cpu_count() or 1, workers * cpus_per_worker + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)


def score_ray(
    queries: Sequence[Query],
    model: str,
    backend_opts: dict,
    behavior,
    store: Store,
    *,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0,
    cpus_per_worker: int = 1,
    chunk_size: int | None = None,
    progress: bool = True,
    max_failures: FailureLimit | int | float | str | None = None,
) -> ScoreSummary:
    """Score every pending query with ``workers`` Ray actors; the driver writes each chunk to ``store``.

    Failures follow the local engine's rule (:func:`rarecast.elicitation.scoring.check_failures`, ``max_failures``).
    """
    import ray

    if workers < 1 or cpus_per_worker < 1 or gpus_per_worker < 0:
        raise InputError("--workers and --cpus-per-worker must be >= 1 and --gpus-per-worker >= 0")
    limit = FailureLimit.parse(max_failures)
    connect(address, workers, cpus_per_worker)
    resources = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
    key = ray.get(ray.remote(**resources)(_run_key).remote(model, backend_opts, behavior))
    by_id = {q.id: q for q in queries}
    todo = [by_id[i] for i in store.pending([q.id for q in queries], key)]
    start = time.perf_counter()
    scored, failures = 0, FailureTally()
    reporter = Progress(len(queries), len(queries) - len(todo), None, enabled=progress)
    with reporter:
        for ok, bad in _chunks_from_actors(
            todo, model, backend_opts, behavior, workers, resources, chunk_size or default_chunk_size(behavior)
        ):
            store.write(key, ok, bad)
            scored += len(ok)
            failures.add(bad)
            reporter.advance(len(ok) + len(bad))
    summary = ScoreSummary(
        total=len(queries),
        skipped=len(queries) - len(todo),
        scored=scored,
        failed=len(failures),
        seconds=time.perf_counter() - start,
        tokens=None,
        reasons=failures.most_common(),
    )
    print_summary(summary, key, store)  # the end-of-run summary shows with or without the live bar
    check_failures(summary, limit)
    return summary


def _chunks_from_actors(todo, model, backend_opts, behavior, workers, resources, chunk_size):
    """Yield ``(results, failures)`` per scored chunk, in the order the actors finish them."""
    import ray

    from rarecast.elicitation.behaviors import Outcome

    if not todo:
        return
    ds = ray.data.from_items([query_record(q) for q in todo], override_num_blocks=max(1, len(todo) // chunk_size))
    scored = ds.map_batches(
        Scorer,
        batch_size=chunk_size,
        concurrency=workers,
        **resources,
        fn_constructor_kwargs={
            "model": model,
            "backend_opts": backend_opts,
            "behavior": behavior,
            "threads": resources["num_cpus"],
        },
    )
    for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
        ok, bad = [], []
        for qid, result, error in zip(batch["id"], batch["result"], batch["error"]):
            if error:
                bad.append((str(qid), str(error)))
            else:
                ok.append((str(qid), Outcome(**json.loads(result))))
        yield ok, bad
