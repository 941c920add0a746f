"""``rarecast score --engine ray``: measuring the scoring loop's chunks on a Ray cluster (or a local Ray).

The driver (the process running ``rarecast score``) owns the store and runs the one scoring loop
(:func:`rarecast.elicitation.scoring.score`); this engine only measures. Each round's queries go through
``Dataset.map_batches`` to a pool of scorer actors (each loads the model once and measures chunks exactly as
the local engine does, with the same per-query failure isolation), and every returned chunk comes back to the
loop, which commits it in one transaction as it arrives. A killed run therefore keeps every committed chunk and
a rerun sends only what is left; a chunk in flight is simply scored again.

Workers must see the same model files as the driver (same path or cache); they never touch the store.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from rarecast.backends import get_backend
from rarecast.elicitation.behaviors import Outcome, run_key
from rarecast.elicitation.engines import Measured, Task, measure_chunk
from rarecast.errors import InputError
from rarecast.queries import Query
from rarecast.store import RunKey


def query_record(query: Query, task: int) -> dict[str, Any]:
    """A query as a Ray Data row: plain strings travel through Arrow blocks, metadata included."""
    data = {"messages": query.messages, "prompt": query.prompt, "metadata": query.metadata}
    return {"id": query.id, "query": json.dumps(data), "task": task}


def query_from_record(qid: str, text: str) -> Query:
    data = json.loads(text)
    messages = tuple(data["messages"]) if data["messages"] is not None else None
    return Query(id=str(qid), messages=messages, prompt=data["prompt"], metadata=data.get("metadata") or {})


class Scorer:
    """A Ray Data actor: one model per actor, measuring one chunk of queries per call."""

    def __init__(self, model: str, backend_opts: dict, behaviors: list[Any], threads: int):
        import torch

        # One actor per CPU share: torch's default (all cores) would oversubscribe a machine with several actors.
        torch.set_num_threads(max(1, threads))
        self.backend = get_backend(model, **backend_opts)
        self.behaviors = behaviors  # the round's behaviors, by task index

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        ids: list[str] = []
        results: list[str] = []
        errors: list[str] = []
        for task in sorted(set(int(t) for t in batch["task"])):
            rows = [i for i, t in enumerate(batch["task"]) if int(t) == task]
            queries = [query_from_record(batch["id"][i], batch["query"][i]) for i in rows]
            ok, bad = measure_chunk(queries, self.backend, self.behaviors[task])
            ids += [qid for qid, _ in ok] + [qid for qid, _ in bad]
            results += [json.dumps(_outcome_dict(o)) for _, o in ok] + [""] * len(bad)
            errors += [""] * len(ok) + [reason for _, reason in bad]
        return {"id": ids, "result": results, "error": errors}


def _outcome_dict(outcome: Outcome) -> dict[str, Any]:
    return {"logp": outcome.logp, "successes": outcome.successes, "trials": outcome.trials, "details": outcome.details}


def _remote_run_key(model: str, backend_opts: dict, behavior: Any) -> RunKey:
    """The run's store key, computed where the model can be loaded (a worker, not the driver)."""
    return run_key(get_backend(model, **backend_opts), behavior)


def connect(address: str | None, workers: int, cpus_per_worker: int) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or start a local one."""
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


class RayEngine:
    """Measures on ``workers`` Ray actors, each holding one model (``model`` with ``backend_opts``)."""

    def __init__(
        self,
        model: str,
        backend_opts: dict | None = None,
        *,
        address: str | None = None,
        workers: int = 2,
        gpus_per_worker: float = 0,
        cpus_per_worker: int = 1,
    ) -> None:
        if workers < 1 or cpus_per_worker < 1 or gpus_per_worker < 0:
            raise InputError("--workers and --cpus-per-worker must be >= 1 and --gpus-per-worker >= 0")
        self.model, self.backend_opts, self.workers = model, dict(backend_opts or {}), workers
        self.resources = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
        connect(address, workers, cpus_per_worker)

    @property
    def tokens_processed(self) -> int | None:
        return None  # the actors' backends count tokens where the driver cannot see them

    def run_key(self, behavior: Any) -> RunKey:
        import ray

        remote = ray.remote(**self.resources)(_remote_run_key)
        return ray.get(remote.remote(self.model, self.backend_opts, behavior))

    def measure(self, tasks: Sequence[Task], chunk_size: int) -> Iterator[Measured]:
        """Yield ``(results, failures)`` per measured chunk, in the order the actors finish them."""
        import ray

        rows = [query_record(q, t) for t, task in enumerate(tasks) for q in task.queries]
        if not rows:
            return
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // chunk_size))
        scored = ds.map_batches(
            Scorer,
            batch_size=chunk_size,
            concurrency=self.workers,
            **self.resources,
            fn_constructor_kwargs={
                "model": self.model,
                "backend_opts": self.backend_opts,
                "behaviors": [task.behavior for task in tasks],
                "threads": self.resources["num_cpus"],
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
