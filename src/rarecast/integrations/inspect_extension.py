"""The rarecast extension for inspect_ai: elicitation probabilities and forecasts inside an inspect task.

Registered through the ``inspect_ai`` entry point in rarecast's ``pyproject.toml``, so inspect finds these
by name (``rarecast/elicitation``, ``rarecast/forecast``) once rarecast is installed:

* :func:`elicitation`, a scorer: the elicitation probability of each sample's input under a rarecast
  behavior, measured with a rarecast backend (exact for ``specific_output`` / ``multiple_choice``, counts for
  ``sampled``); the score's metadata carries ``logp`` (or ``successes``/``trials``) and the provenance that
  ``rarecast score`` stores, so ``rarecast import inspect`` turns the log into the same table.
* :func:`forecast`, a metric: fits the tail of those scores and reports deployment-scale forecasts in the
  eval's results. It sees every epoch (``scores="unreduced"``), so sampled epochs pool into counts.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import TaskState

import rarecast as rc
from rarecast import Scores
from rarecast.backends import get_backend
from rarecast.elicitation.behaviors import load_behavior, run_key
from rarecast.integrations.inspect import DEFAULT_SUCCESS, add_epoch, canonical_value, finish_pools, new_pools
from rarecast.queries import Query

if TYPE_CHECKING:
    from rarecast.backends.base import Backend

logger = logging.getLogger(__name__)


def query_of(state: TaskState) -> Query:
    """The sample's input as a rarecast query: a plain prompt stays a prompt, a chat keeps its turns."""
    qid = str(state.sample_id)
    if isinstance(state.input, str):
        return Query(id=qid, prompt=state.input)
    turns = tuple({"role": m.role, "content": m.text} for m in state.input if m.role in ("system", "user", "assistant"))
    return Query(id=qid, messages=turns)


class _Measurer:
    """A behavior and a backend loaded on first use; one measurement at a time, since the backend holds one
    model and scores are deterministic only when queries are not interleaved mid-batch."""

    def __init__(self, behavior: str | dict, model: str, backend_options: dict[str, Any]):
        self.behavior = load_behavior(Path(behavior) if isinstance(behavior, str) else behavior)
        self.model, self.options = model, backend_options
        self._backend: Backend | None = None
        self._lock = threading.Lock()

    def measure(self, query: Query) -> Score:
        with self._lock:
            if self._backend is None:
                self._backend = get_backend(self.model, **self.options)
            (outcome,) = self.behavior.measure([query], self._backend)
            key = run_key(self._backend, self.behavior)
        meta = {
            "model": key.model,
            "revision": key.revision,
            "behavior": key.behavior_name,
            "behavior_id": key.behavior_id,
            "behavior_spec": json.loads(key.behavior_json),
            "decoding": json.loads(key.settings_json),
        }
        if outcome.logp is not None:
            return Score(value=math.exp(outcome.logp), metadata={"logp": outcome.logp, **meta})
        assert outcome.successes is not None and outcome.trials is not None  # an outcome without logp holds counts
        return Score(
            value=outcome.successes / outcome.trials,
            metadata={"successes": outcome.successes, "trials": outcome.trials, **meta},
        )


@metric(scores="unreduced")
def forecast(n: Sequence[float] = (1e4, 1e6), tau: Sequence[float] = (0.5,), method: str | None = None) -> Metric:
    """Deployment-scale forecasts of the scores' tail: worst-query and aggregate risk at each ``n``, behavior
    frequency at each ``tau``. Keys read ``worst_query_risk@1e+06``. A fit the data cannot support gives NaN
    values and a logged warning rather than failing an eval whose samples are already paid for."""
    sizes, taus = [float(x) for x in n], [float(t) for t in tau]

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        keys = (
            [f"worst_query_risk@{x:g}" for x in sizes]
            + [f"aggregate_risk@{x:g}" for x in sizes]
            + [f"behavior_frequency@{t:g}" for t in taus]
        )
        try:
            fit = rc.fit_tail(scores_of(scores), method=method)
            values = [*fit.worst_query_risk(sizes), *fit.aggregate_risk(sizes), *fit.behavior_frequency(taus)]
        except rc.RarecastError as exc:
            logger.warning("rarecast forecast: %s", exc)
            values = [math.nan] * len(keys)
        return dict(zip(keys, (float(v) for v in values)))

    return compute


def scores_of(sample_scores: Sequence[SampleScore], success: Sequence[str] = DEFAULT_SUCCESS):
    """Pool per-epoch sample scores by sample id into :class:`rarecast.Scores`, as the log importer does."""
    wanted = {canonical_value(v) for v in success}
    pools = new_pools()
    for s in sample_scores:
        add_epoch(pools, str(s.sample_id), s.score, wanted, file="inspect metric", where=f"sample {s.sample_id!r}")
    rows = finish_pools(pools, source="inspect metric")
    ids = [r.query_id for r in rows]
    # finish_pools gives rows of one kind; a missing value would read as NaN, which Scores refuses
    if rows and rows[0].logp is not None:
        return Scores.from_logp(np.array([r.logp for r in rows], dtype=float), ids=ids)
    successes = np.array([r.successes for r in rows], dtype=float)
    return Scores.from_counts(successes, np.array([r.trials for r in rows], dtype=float), ids=ids)


@scorer(metrics=[forecast()])
def elicitation(behavior: str | dict, model: str = "hf:smollm2", **backend_options: Any) -> Scorer:
    """Score each sample by its elicitation probability under ``behavior`` (a behavior YAML path or dict),
    measured with the rarecast backend ``model`` (``hf:smollm2``, ``hf:<id>``, ``openai:...``);
    ``backend_options`` go to the backend (``dtype``, ``device``, ``batch_tokens``). The sample's own model
    output is not used: the probability is a property of the input, as in ``rarecast score``."""
    measurer = _Measurer(behavior, model, backend_options)

    async def score(state: TaskState, target: Target) -> Score:
        # Synchronous on purpose: the model runs on this process's cores, so threads would only contend.
        return measurer.measure(query_of(state))

    return score


__all__ = ["elicitation", "forecast", "query_of", "scores_of"]
