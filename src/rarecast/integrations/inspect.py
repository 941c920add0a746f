"""Importing inspect_ai evaluation logs (``.eval`` and ``.json``) as rarecast score tables.

Logs are read with inspect's own reader, :func:`inspect_ai.log.read_eval_log`, so every log format inspect
writes is understood. A sample seen in several epochs is one query seen several times: its epochs become
``trials`` and the epochs whose score counts as a success become ``successes``. Scores that hold an exact
log-probability become ``logp`` instead: rarecast's own ``rarecast/elicitation`` scorer (metadata ``logp``,
or ``successes``/``trials`` for sampled behaviors) and inspect's ``target_perplexity`` / ``perplexity``
scorers (metadata ``sum_log_probs``, the log-probability of the scored tokens).

Logs of one task, model and scorer are pooled into one run (several files add epochs); different tasks or
models give separate runs. Logs are pooled only when they were made under the same settings: a log whose
generation settings (temperature, top_p, max_tokens, ...), model revision or behavior differ from the first
log of its run is refused with an error naming both files and the setting, rather than split into runs that
the output file names could not tell apart. Settings that change how requests are sent, not what the model
samples (timeouts, retries, connections, caching, batching), and the seed (another seed is how more epochs are
drawn) may differ; the pooled run records them only where all its logs agree.
"""

from __future__ import annotations

import math
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecast.errors import InputError, RarecastError
from rarecast.integrations import ImportedRow, ImportedRun, counts_row, exact_row

#: score values that count as a success when ``--success`` is not given: inspect's CORRECT, true and 1
DEFAULT_SUCCESS = ("C", "1")
#: the log schema version this importer understands (inspect has written version 2 since 2024)
SUPPORTED_VERSION = 2
#: metadata keys that hold an exact log-probability: rarecast's scorer, then inspect's perplexity scorers
LOGP_KEYS = ("logp", "sum_log_probs")
#: provenance the rarecast scorer records in each score's metadata
_RARECAST_PROVENANCE = ("model", "revision", "behavior", "behavior_spec", "decoding")
_UNSET = object()
#: generation settings that may differ between pooled logs: how requests are sent, and the seed
POOLABLE_SETTINGS = frozenset(
    {
        "max_retries",
        "timeout",
        "attempt_timeout",
        "stream_idle_timeout",
        "max_connections",
        "adaptive_connections",
        "cache_prompt",
        "cache",
        "batch",
        "extra_headers",
        "seed",
    }
)


def require_inspect() -> None:
    """Raise a one-line error when inspect_ai is not installed."""
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        raise RarecastError("reading inspect logs needs inspect_ai: pip install 'rarecast[inspect]'") from None


def read_log(path: str | Path):
    """The :class:`inspect_ai.log.EvalLog` in ``path``, with samples; InputError naming the file otherwise."""
    require_inspect()
    from inspect_ai.log import read_eval_log

    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", file=str(p))
    if p.suffix.lower() == ".eval" and not zipfile.is_zipfile(p):
        raise InputError("not a complete .eval archive (truncated, or not an inspect log)", file=str(p))
    try:
        log = read_eval_log(str(p))
    except Exception as exc:  # inspect raises zip, JSON and pydantic errors for damaged files
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise InputError(
            f"not a readable inspect log, truncated or damaged ({type(exc).__name__}: {first})", file=str(p)
        ) from None
    if log.version != SUPPORTED_VERSION:
        raise InputError(
            f"inspect log version {log.version}; this importer reads version {SUPPORTED_VERSION}", file=str(p)
        )
    if not log.samples:
        raise InputError(f"holds no samples (status {log.status}; was it run with log_samples=False?)", file=str(p))
    return log


@dataclass
class _Pool:
    """Epoch results of one query collected across logs."""

    logps: list[float] = field(default_factory=list)
    successes: int = 0
    trials: int = 0


def canonical_value(value: Any) -> str:
    """A score value or ``--success`` argument as comparable text: true/1/1.0 -> "1", false/0 -> "0"."""
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return "1" if text.lower() == "true" else "0"
    try:
        number = float(text)
    except ValueError:
        return text
    return format(number, "g")


def read_inspect_logs(
    paths: Sequence[str | Path], *, scorer: str | None = None, success: Iterable[str] | None = None
) -> list[ImportedRun]:
    """Runs (one per task x model x scorer) from inspect logs; see the module docstring.

    ``scorer`` picks the score when samples hold several; ``success`` lists the values that count as a
    success (default: ``C``, true, 1). Raises :class:`~rarecast.errors.InputError` naming the file for an
    unreadable or truncated log, a log version other than 2, a log without samples, or a missing score.
    """
    wanted = {canonical_value(v) for v in (success or DEFAULT_SUCCESS)}
    runs: dict[tuple[str, str, str], tuple[ImportedRun, dict[str, _Pool]]] = {}
    first_file: dict[tuple[str, str, str], str] = {}
    for path in paths:
        log = read_log(path)
        name = _pick_scorer(log, scorer, str(path))
        run = _run_for(log, name, wanted, str(path))
        key = (run.model, log.eval.task, name)
        if key not in runs:
            runs[key], first_file[key] = (run, new_pools()), str(path)
        else:
            _check_poolable(runs[key][0], run, first_file[key], str(path))
            runs[key][0].source += f",{path}"
        _collect(log, name, wanted, runs[key][1], str(path))
    for run, pools in runs.values():
        run.rows = finish_pools(pools, source=run.source)
    return [run for run, _ in runs.values()]


def _check_poolable(pooled: ImportedRun, run: ImportedRun, first: str, file: str) -> None:
    """Refuse to pool ``run`` (from ``file``) into ``pooled`` (first seen in ``first``) when they were made under
    different settings; settings in :data:`POOLABLE_SETTINGS` that differ are dropped from the pooled record."""
    differing = _differing_keys(pooled.decoding, run.decoding)
    blocking = [k for k in differing if k not in POOLABLE_SETTINGS]
    if blocking:
        what = f"decoding setting {blocking[0]!r}"
        here, there = _shown(run.decoding, blocking[0]), _shown(pooled.decoding, blocking[0])
    elif run.revision != pooled.revision:
        what, here, there = "model revision", repr(run.revision), repr(pooled.revision)
    elif _differing_keys(pooled.behavior_spec, run.behavior_spec):
        key = _differing_keys(pooled.behavior_spec, run.behavior_spec)[0]
        what = f"behavior setting {key!r}"
        here, there = _shown(run.behavior_spec, key), _shown(pooled.behavior_spec, key)
    else:
        for k in differing:  # the seed or a request setting: no one value holds for the pooled run
            pooled.decoding.pop(k, None)
        return
    raise InputError(
        f"{what} is {here} here but {there} in {first}; logs of one task, model and scorer pool "
        "into one run only under the same settings (import them separately)",
        file=file,
    )


def _differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _UNSET) != b.get(k, _UNSET))


def _shown(settings: dict[str, Any], key: str) -> str:
    return repr(settings[key]) if key in settings else "unset"


def _pick_scorer(log, scorer: str | None, file: str) -> str:
    names = sorted({n for s in log.samples for n in (s.scores or {})})
    if not names:
        raise InputError("its samples hold no scores (was the task scored?)", file=file)
    if scorer is not None:
        if scorer not in names:
            raise InputError(f"no scorer {scorer!r}; the log has {', '.join(names)}", file=file)
        return scorer
    if len(names) > 1:
        raise InputError(f"several scorers ({', '.join(names)}); choose one with --scorer", file=file)
    return names[0]


def _first_score(log, name: str):
    return next(s.scores[name] for s in log.samples if s.scores and name in s.scores)


def _run_for(log, name: str, wanted: set[str], file: str) -> ImportedRun:
    """Provenance of one log: from the rarecast scorer's metadata where present, else from the log header."""
    meta = _first_score(log, name).metadata or {}
    if all(k in meta for k in _RARECAST_PROVENANCE):
        return ImportedRun(
            label=f"{log.eval.task}.{name}",
            model=meta["model"],
            revision=meta["revision"],
            behavior=meta["behavior"],
            behavior_spec=meta["behavior_spec"],
            decoding=meta["decoding"],
            source=f"inspect:{file}",
        )
    exact = any(k in meta for k in LOGP_KEYS)
    spec = {
        "source": "inspect",
        "task": log.eval.task,
        "task_version": log.eval.task_version,
        "scorer": name,
        "success": "exact" if exact else sorted(wanted),
    }
    return ImportedRun(
        label=f"{log.eval.task}.{name}.{log.eval.model}",
        model=log.eval.model,
        revision="unknown",
        behavior=f"{log.eval.task}/{name}",
        behavior_spec=spec,
        decoding=generation_settings(log),
        source=f"inspect:{file}",
    )


def generation_settings(log) -> dict[str, Any]:
    """The generation settings in force: the model's config overlaid with the eval's, unset ones left out."""
    settings: dict[str, Any] = {}
    for config in (log.eval.model_generate_config, log.plan.config):
        if config is not None:
            settings.update(config.model_dump(exclude_none=True))
    return settings


def _collect(log, name: str, wanted: set[str], pools: dict[str, _Pool], file: str) -> None:
    for sample in log.samples:
        score = (sample.scores or {}).get(name)
        where = f"sample {sample.id!r} epoch {sample.epoch}"
        if score is None:
            raise InputError(f"{where} has no {name!r} score", file=file)
        add_epoch(pools, str(sample.id), score, wanted, file=file, where=where)


def new_pools() -> dict[str, _Pool]:
    """Empty per-query pools for :func:`add_epoch`."""
    return defaultdict(_Pool)


def add_epoch(pools: dict[str, _Pool], query_id: str, score, wanted: set[str], *, file: str, where: str) -> None:
    """Add one epoch's inspect ``Score`` of a query to its pool: an exact log p, counts, or one pass/fail."""
    if _unscored(score.value):
        return  # inspect's marker for a sample it could not score: no trial happened
    pool = pools[query_id]
    meta = score.metadata or {}
    logp = next((meta[k] for k in LOGP_KEYS if k in meta), None)
    if logp is not None:
        row = exact_row(query_id, logp, file=file, where=where)
        assert row.logp is not None  # exact_row always sets it
        pool.logps.append(row.logp)
    elif "successes" in meta and "trials" in meta:
        pool.successes += int(meta["successes"])
        pool.trials += int(meta["trials"])
    else:
        pool.successes += canonical_value(score.value) in wanted
        pool.trials += 1


def _unscored(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def finish_pools(pools: dict[str, _Pool], *, source: str) -> list[ImportedRow]:
    """One row per query: exact epochs average their probabilities, counts add up."""
    kinds = {bool(p.logps) for p in pools.values() if p.logps or p.trials}
    if len(kinds) > 1:
        raise InputError("some samples have exact log-probabilities and others pass/fail scores", file=source)
    rows = []
    for qid, pool in pools.items():
        if pool.logps:
            rows.append(ImportedRow(qid, logp=_log_mean_exp(pool.logps)))
        elif pool.trials:
            rows.append(counts_row(qid, pool.successes, pool.trials, file=source, where=f"sample {qid!r}"))
    return rows


def _log_mean_exp(logps: list[float]) -> float:
    """log of the mean probability; epochs of a deterministic measurement repeat one value exactly."""
    top = max(logps)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in logps) / len(logps))


__all__ = [
    "DEFAULT_SUCCESS",
    "add_epoch",
    "canonical_value",
    "finish_pools",
    "generation_settings",
    "new_pools",
    "read_inspect_logs",
    "read_log",
]
