"""The main job: an experiment -> queries, scores in the store, a forecast with intervals, a report."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecast.backends import get_backend
from rarecast.elicitation.behaviors import run_key
from rarecast.elicitation.failures import FailureLimit
from rarecast.elicitation.scoring import score
from rarecast.errors import InputError
from rarecast.experiment.file import Experiment, load_experiment
from rarecast.forecasting.fit import forecast_result
from rarecast.forecasting.result import ForecastResult
from rarecast.queries import Query, load_queries
from rarecast.queries.building import BuildReport, build_queries, write_queries
from rarecast.queries.generation import generate_queries
from rarecast.report import write_report
from rarecast.report.console import print_forecast
from rarecast.store import Store
from rarecast.store.archive import save_query_texts


@dataclass
class RunResult:
    """What :func:`run_experiment` produced: the paths of its outputs and the forecast (whose ``scoring`` holds
    what the scoring run did)."""

    out: Path
    store: Path
    queries: Path
    forecast_json: Path
    report: Path
    plots: list[Path]
    forecast: ForecastResult


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
    overrides the experiment's own (see :class:`rarecast.elicitation.failures.FailureLimit`); when more queries fail,
    :class:`~rarecast.errors.RunFailed` is raised after scoring and no forecast or report is written.
    """
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
        save_query_texts(store, queries)
        run = store.run(run_key(backend, exp.behavior))
        if run is None:
            raise InputError("no query could be scored; see the failures table in the store", file=str(store_path))
        scores, provenance = store.scores(run, [q.id for q in queries])
    provenance.update(experiment=exp.name, experiment_file=exp.source, queries_file=str(queries_path))
    if build is not None:
        provenance["query_build"] = build.to_dict()
    fit, result = forecast_result(scores, provenance, n=exp.n, tau=exp.tau, method=exp.method, level=exp.level)
    result.scoring = {
        "total": summary.total,
        "skipped": summary.skipped,
        "scored": summary.scored,
        "failed": summary.failed,
        "seconds": round(summary.seconds, 3),
        "queries_per_s": None if math.isnan(summary.queries_per_s) else summary.queries_per_s,
    }
    return _write_outputs(exp, fit, result, {q.id: q for q in queries}, store_path, queries_path, console)


def _static_queries(exp: Experiment) -> tuple[list[Query] | None, BuildReport | None]:
    """Queries from a file or a spec (``None`` for generated queries, which need the model first)."""
    if "file" in exp.queries:
        return load_queries(exp.queries["file"]), None
    if "build" in exp.queries:
        return build_queries(exp.queries["build"])
    return None, None


def _generated_queries(exp: Experiment, progress: bool) -> list[Query]:
    request = exp.queries["generate"]
    path = exp.out / "generated_queries.jsonl"
    generate_queries(request, path, progress=progress)
    return load_queries(path)


def _write_outputs(
    exp: Experiment,
    fit,
    result: ForecastResult,
    queries: dict[str, Query],
    store_path: Path,
    queries_path: Path,
    console,
) -> RunResult:
    forecast_json = exp.out / "forecast.json"
    forecast_json.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    report, plots = write_report(fit, result, queries, exp.out / "report.html")
    if console is not None:
        print_forecast(result, console)
        console.print(
            f"store     {store_path}\nforecast  {forecast_json}\nreport    {report}", highlight=False, soft_wrap=True
        )
    return RunResult(
        out=exp.out,
        store=store_path,
        queries=queries_path,
        forecast_json=forecast_json,
        report=report,
        plots=plots,
        forecast=result,
    )
