"""The main job: one experiment file -> queries, scores in the store, a forecast with intervals, a report.

An experiment is a YAML mapping (read with ``yaml.safe_load``); paths in it are relative to the file::

    name: vault-password
    queries: queries.yaml        # a query file (.jsonl/.csv/.parquet/.txt), a template spec (.yaml), or
                                 # {file: ...} / {build: spec.yaml or an inline spec} / {generate: {...}}
    model: hf:smollm2            # default
    model_options: {dtype: fp32} # passed to the backend
    behavior: behavior.yaml      # or an inline behavior mapping
    n: [1.0e+4, 1.0e+6]          # deployment sizes (default 1e4, 1e6, 1e9)
    tau: [0.5]                   # behavior-frequency thresholds (default 0.5)
    method: null                 # tail estimator (default: rarecast's default for the score kind)
    level: 0.9                   # interval level
    max_failures: 0.1            # failed queries tolerated: a count or a fraction (default: fail only if all do)
    out: results/                # output folder (default: <file stem>-results beside the file)

:func:`run_experiment` checks everything it can before it writes anything, then scores into
``out/run.db`` (resumably: a rerun scores only what is missing), fits, forecasts and writes
``out/queries.jsonl``, ``out/forecast.json``, ``out/report.html`` and the report's PNG plots. A run whose
scoring failed (more failed queries than ``max_failures`` allows; see :class:`rarecast.scoring.FailureLimit`)
raises :class:`~rarecast.errors.RunFailed` after scoring and writes no forecast or report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rarecast.errors import InputError
from rarecast.forecast import DEFAULT_N, DEFAULT_TAU, forecast_result
from rarecast.queries import Query, load_queries
from rarecast.query_building import BuildReport, build_queries, load_spec, write_queries
from rarecast.scoring import FailureLimit
from rarecast.yaml_files import read_yaml_mapping

_KEYS = {"name", "queries", "model", "model_options", "behavior", "n", "tau", "method", "level", "max_failures",
         "out"}
_QUERY_FORMS = {"file", "build", "generate"}
_SPEC_SUFFIXES = {".yaml", ".yml"}


@dataclass(frozen=True)
class Experiment:
    """A parsed, checked experiment; ``queries`` says where the queries come from (see :func:`load_experiment`)."""

    name: str
    queries: dict[str, Any]
    model: str
    model_options: dict[str, Any]
    behavior: Any
    n: tuple[float, ...]
    tau: tuple[float, ...]
    method: str | None
    level: float
    out: Path
    source: str | None = None
    max_failures: FailureLimit = FailureLimit()


@dataclass
class RunResult:
    """What :func:`run_experiment` produced: paths of its outputs and the forecast as plain data."""

    out: Path
    store: Path
    queries: Path
    forecast_json: Path
    report: Path
    plots: list[Path]
    forecast: dict[str, Any]
    scoring: dict[str, Any] = field(default_factory=dict)


def load_experiment(source: str | Path | Mapping[str, Any], *, out: str | Path | None = None) -> Experiment:
    """Parse and check an experiment from a YAML file or a dict (whose paths are relative to the cwd).

    ``out`` overrides the file's output folder. Raises :class:`~rarecast.errors.InputError` naming the file and
    the key at fault.
    """
    if isinstance(source, Mapping):
        raw, file, base = dict(source), None, Path.cwd()
    else:
        path = Path(source)
        raw, file, base = read_yaml_mapping(path, "an experiment"), str(path), path.resolve().parent
    default_out = base / (f"{Path(file).stem}-results" if file else "rarecast-results")
    return _parse(raw, file, base, Path(out) if out is not None else None, default_out)


def _parse(raw: dict, file: str | None, base: Path, out: Path | None, default_out: Path) -> Experiment:
    from rarecast.behaviors import load_behavior

    def fail(key: str, problem: str) -> InputError:
        return InputError(f"key '{key}': {problem}", file=file)

    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key; known: {sorted(_KEYS)}")
    name = raw.get("name", Path(file).stem if file else "experiment")
    if not isinstance(name, str) or not name:
        raise fail("name", "must be a non-empty string")
    if "queries" not in raw:
        raise fail("queries", "is required: a query file, a template spec, or {file|build|generate: ...}")
    behavior_raw = raw.get("behavior")
    if isinstance(behavior_raw, str):
        behavior = load_behavior(base / behavior_raw)
    elif isinstance(behavior_raw, dict):
        try:
            behavior = load_behavior(behavior_raw)
        except InputError as exc:
            raise fail("behavior", exc.problem) from None
    else:
        raise fail("behavior", "is required: a behavior YAML file or an inline mapping (name, kind, ...)")
    model = raw.get("model", "hf:smollm2")
    if not isinstance(model, str) or ":" not in model:
        raise fail("model", f"must be a model string such as hf:smollm2, got {model!r}")
    options = raw.get("model_options", {})
    if not isinstance(options, dict):
        raise fail("model_options", "must be a mapping of backend options")
    out_raw = raw.get("out")
    if out is None and out_raw is not None and not isinstance(out_raw, str):
        raise fail("out", "must be a folder path")
    try:
        max_failures = FailureLimit.parse(raw.get("max_failures"), name="it")
    except InputError as exc:
        raise fail("max_failures", exc.problem) from None
    return Experiment(
        name=name,
        queries=_query_source(raw["queries"], base, fail),
        model=model,
        model_options=dict(options),
        behavior=behavior,
        n=_numbers(raw.get("n", DEFAULT_N), "n", lambda v: v >= 1, ">= 1", fail),
        tau=_numbers(raw.get("tau", DEFAULT_TAU), "tau", lambda v: 0 < v < 1, "in (0, 1)", fail),
        method=_method(raw.get("method"), fail),
        level=_numbers(raw.get("level", 0.9), "level", lambda v: 0 < v < 1, "in (0, 1)", fail)[0],
        out=out if out is not None else (base / out_raw if out_raw else default_out),
        source=file,
        max_failures=max_failures,
    )


def _query_source(raw: Any, base: Path, fail) -> dict[str, Any]:
    """Normalize the ``queries`` key to ``{"file": path}``, ``{"build": spec}`` or ``{"generate": {...}}``."""
    if isinstance(raw, str):
        path = base / raw
        return {"build": load_spec(path), "path": path} if path.suffix.lower() in _SPEC_SUFFIXES else {"file": path}
    if not isinstance(raw, dict) or len(raw) != 1 or set(raw) - _QUERY_FORMS:
        raise fail("queries", "must be a path, or a mapping with exactly one of file / build / generate")
    (form, value), = raw.items()
    if form == "file":
        if not isinstance(value, str):
            raise fail("queries.file", "must be a path")
        return {"file": base / value}
    if form == "build":
        if isinstance(value, str):
            return {"build": load_spec(base / value), "path": base / value}
        if isinstance(value, dict):
            try:
                return {"build": load_spec(value)}
            except InputError as exc:
                raise fail("queries.build", exc.problem) from None
        raise fail("queries.build", "must be a spec file or an inline spec mapping")
    from rarecast.query_generation import GenerationRequest

    try:
        return {"generate": GenerationRequest.from_dict(value)}
    except InputError as exc:
        raise fail("queries.generate", exc.problem) from None


def _numbers(raw: Any, key: str, ok, rule: str, fail) -> tuple[float, ...]:
    values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    out = []
    for v in values:
        if isinstance(v, str):  # YAML reads 1e6 (no dot) as a string
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            raise fail(key, f"values must be numbers {rule}, got {v!r}")
        out.append(float(v))
    if not out:
        raise fail(key, "needs at least one value")
    return tuple(out)


def _method(raw: Any, fail) -> str | None:
    from rarecast.tail import methods

    if raw is None:
        return None
    if raw not in methods():
        raise fail("method", f"must be one of {', '.join(methods())}, got {raw!r}")
    return raw


# ----------------------------------------------------------------------------------------------------------
# Running


def run_experiment(
    source: str | Path | Mapping[str, Any] | Experiment,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    console=None,
    max_failures: FailureLimit | int | float | str | None = None,
) -> RunResult:
    """Run one experiment end to end and return its :class:`RunResult`.

    ``source`` is an experiment YAML path, a dict of the same form, or an :class:`Experiment`. With
    ``console`` (a rich Console) the forecast table and the output paths are printed to it. ``max_failures``
    overrides the experiment's own (see :class:`rarecast.scoring.FailureLimit`); when more queries fail,
    :class:`~rarecast.errors.RunFailed` is raised after scoring and no forecast or report is written.
    """
    from rarecast.backends import get_backend
    from rarecast.scoring import score
    from rarecast.store import Store, run_key

    exp = source if isinstance(source, Experiment) else load_experiment(source, out=out)
    limit = exp.max_failures if max_failures is None else FailureLimit.parse(max_failures)
    static_queries, build = _static_queries(exp)  # files and specs are read before anything is written
    backend = get_backend(exp.model, **exp.model_options)
    exp.out.mkdir(parents=True, exist_ok=True)
    queries = static_queries if static_queries is not None else _generated_queries(exp, progress)
    queries_path = exp.out / "queries.jsonl"
    write_queries(queries, queries_path)
    store_path = exp.out / "run.db"
    with Store(store_path) as store:
        summary = score(queries, backend, exp.behavior, store, progress=progress, max_failures=limit)
        from rarecast.query_archive import save_query_texts

        save_query_texts(store, queries)
        scores, provenance = run_scores(store, run_key(backend, exp.behavior), [q.id for q in queries])
    provenance.update(experiment=exp.name, experiment_file=exp.source, queries_file=str(queries_path))
    if build is not None:
        provenance["query_build"] = build.to_dict()
    fit, result = forecast_result(scores, provenance, n=exp.n, tau=exp.tau, method=exp.method, level=exp.level)
    result["scoring"] = {"total": summary.total, "skipped": summary.skipped, "scored": summary.scored,
                         "failed": summary.failed, "seconds": round(summary.seconds, 3),
                         "queries_per_s": None if math.isnan(summary.queries_per_s) else summary.queries_per_s}
    return _write_outputs(exp, fit, result, {q.id: q for q in queries}, store_path, queries_path, console)


def _static_queries(exp: Experiment) -> tuple[list[Query] | None, BuildReport | None]:
    """Queries from a file or a spec (``None`` for generated queries, which need the model first)."""
    if "file" in exp.queries:
        return load_queries(exp.queries["file"]), None
    if "build" in exp.queries:
        return build_queries(exp.queries["build"])
    return None, None


def _generated_queries(exp: Experiment, progress: bool) -> list[Query]:
    from rarecast.query_generation import generate_queries

    request = exp.queries["generate"]
    path = exp.out / "generated_queries.jsonl"
    generate_queries(request, path, progress=progress)
    return load_queries(path)


def run_scores(store, key, query_ids: list[str]):
    """Scores of the run stored under ``key``, restricted to ``query_ids`` (in that order), with provenance.

    A store can hold rows of queries that an earlier version of the experiment had; they are left out.
    """
    from rarecast.scores import Scores

    run = next((r for r in store.runs() if (r["model"], r["revision"], r["behavior_id"], r["settings_hash"])
                == key.values()), None)
    by_id = {row[0]: row for row in store.rows(run)} if run is not None else {}
    rows = [by_id[i] for i in query_ids if i in by_id]
    if not rows:
        raise InputError("no query could be scored; see the failures table in the store", file=str(store.path))
    ids = [r[0] for r in rows]
    if run["kind"] == "exact":
        scores = Scores.from_logp([r[1] for r in rows], ids=ids)
    else:
        scores = Scores.from_counts([r[2] for r in rows], [r[3] for r in rows], ids=ids)
    return scores, {**run, "n": len(rows), "source": str(store.path)}


def _write_outputs(exp: Experiment, fit, result: dict, queries: dict[str, Query], store_path: Path,
                   queries_path: Path, console) -> RunResult:
    from rarecast.report import write_report

    forecast_json = exp.out / "forecast.json"
    forecast_json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    report, plots = write_report(fit, result, queries, exp.out / "report.html")
    if console is not None:
        from rarecast.cli.forecast import print_forecast

        print_forecast(result, console)
        console.print(f"store     {store_path}\nforecast  {forecast_json}\nreport    {report}", highlight=False, soft_wrap=True)
    return RunResult(out=exp.out, store=store_path, queries=queries_path, forecast_json=forecast_json,
                     report=report, plots=plots, forecast=result, scoring=result["scoring"])
