"""Experiment files: the YAML that names one run of the main job, parsed and checked before anything runs.

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
scoring failed (more failed queries than ``max_failures`` allows; see
:class:`rarecast.elicitation.failures.FailureLimit`) raises :class:`~rarecast.errors.RunFailed` after scoring
and writes no forecast or report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarecast.elicitation.behaviors import load_behavior
from rarecast.elicitation.failures import FailureLimit
from rarecast.errors import InputError
from rarecast.files import Config, read_config
from rarecast.forecasting.fit import DEFAULT_N, DEFAULT_TAU
from rarecast.forecasting.tail import methods
from rarecast.queries.building import load_spec
from rarecast.queries.generation import GenerationRequest

_KEYS = {"name", "queries", "model", "model_options", "behavior", "n", "tau", "method", "level", "max_failures", "out"}
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


def load_experiment(source: str | Path | Mapping[str, Any], *, out: str | Path | None = None) -> Experiment:
    """Parse and check an experiment from a YAML file or a dict (whose paths are relative to the cwd).

    ``out`` overrides the file's output folder. Raises :class:`~rarecast.errors.InputError` naming the file and
    the key at fault.
    """
    config = read_config(source, "an experiment")
    return _parse(config, Path(out) if out is not None else None)


def _parse(config: Config, out: Path | None) -> Experiment:
    raw, file, base, fail = config.values, config.file, config.base, config.error
    default_out = base / (f"{Path(file).stem}-results" if file else "rarecast-results")
    config.check_keys(_KEYS)
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
    ((form, value),) = raw.items()
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
    if raw is None:
        return None
    if raw not in methods():
        raise fail("method", f"must be one of {', '.join(methods())}, got {raw!r}")
    return raw
