"""Property-based tests (hypothesis) of the loaders and of fit_tail (issue 8, part 3): any input gives either a
valid result (a forecast in [0, 1], queries, scores) or a clean RarecastError, never another exception.
Example counts are kept small so the whole module runs in well under 30 s on a busy 2-core machine."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rarecast
from rarecast.errors import RarecastError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS = ["gumbel-ols", "lognormal", "exponential", "gpd"]

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
logps = st.one_of(
    st.lists(floats, max_size=60),
    st.lists(st.floats(min_value=-60, max_value=0), min_size=0, max_size=80),
    st.lists(st.sampled_from([-1.0, -2.0, -np.inf, 0.0, -1e-300, -700.0]), max_size=40),
)


def _check_fit(fit) -> None:
    for n in (1, 1e4, 1e9):
        for value in (fit.worst_query_risk(n), fit.aggregate_risk(n)):
            assert 0.0 <= float(value) <= 1.0, value
    assert 0.0 <= float(fit.behavior_frequency(0.5)) <= 1.0


@FAST
@given(values=logps, method=st.sampled_from(METHODS))
def test_fit_tail_gives_a_forecast_in_unit_interval_or_a_clean_error(values, method) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = rarecast.fit_tail(np.array(values, dtype=float), method=method, n_draws=20)
        except RarecastError:
            return
        _check_fit(fit)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.floats(min_value=-40, max_value=0), min_size=0, max_size=60))
def test_default_method_gives_a_forecast_or_a_clean_error(values) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = rarecast.fit_tail(np.array(values, dtype=float), n_draws=20)
        except RarecastError:
            return
        _check_fit(fit)


@FAST
@given(pairs=st.lists(st.tuples(st.integers(-3, 60), st.integers(-3, 60)), max_size=50))
def test_fit_tail_on_counts_gives_a_forecast_or_a_clean_error(pairs) -> None:
    successes = [s for s, _ in pairs]
    trials = [t for _, t in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = rarecast.fit_tail(rarecast.Scores.from_counts(successes, trials), n_draws=20)
        except RarecastError:
            return
        _check_fit(fit)


# -- loaders --------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | floats | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
record = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "prompt": json_values,
        "messages": json_values,
        "logp": json_values,
        "p": json_values,
        "successes": json_values,
        "trials": json_values,
        "extra": json_values,
    },
)


def _write(data: bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="rarecast-prop-"))
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    return path


@FAST
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".csv", ".txt", ".parquet"]))
@example(data=b"\r\x00", suffix=".csv")  # a carriage return inside the header: once a raw csv.Error
@example(data=b"prompt\na\rb\x00\n", suffix=".csv")  # the same in a row
def test_query_loader_on_random_bytes(data, suffix) -> None:
    from rarecast.queries import Query, load_queries

    try:
        queries = load_queries(_write(data, suffix))
    except RarecastError:
        return
    assert queries and all(isinstance(q, Query) and q.id for q in queries)
    assert len({q.id for q in queries}) == len(queries)


@FAST
@given(rows=st.lists(record, max_size=8))
def test_query_loader_on_random_json_records(rows) -> None:
    from rarecast.queries import load_queries

    text = "\n".join(json.dumps(r) for r in rows)
    try:
        queries = load_queries(_write(text.encode(), ".jsonl"))
    except RarecastError:
        return
    for q in queries:
        assert (q.prompt is None) != (q.messages is None)


@FAST
@given(rows=st.lists(record, max_size=8), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_score_reader_on_random_records(rows, suffix) -> None:
    from rarecast.store.score_files import read_scores

    if suffix == ".jsonl":
        data = "\n".join(json.dumps(r) for r in rows).encode()
    else:
        cols = sorted({k for r in rows for k in r})
        lines = [",".join(cols)] + [
            ",".join(json.dumps(r.get(c, ""))[:30].replace(",", " ") for c in cols) for r in rows
        ]
        data = "\n".join(lines).encode()
    try:
        scores, _ = read_scores(_write(data, suffix))
    except RarecastError:
        return
    if scores.kind == "exact":
        assert np.all((scores.logp <= 0) | np.isneginf(scores.logp)) and not np.any(np.isnan(scores.logp))
    else:
        assert np.all((0 <= scores.successes) & (scores.successes <= scores.trials))


@FAST
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_behavior_and_experiment_loaders_on_random_text(data) -> None:
    from rarecast.elicitation.behaviors import load_behavior
    from rarecast.experiment import load_experiment

    path = _write(data, ".yaml")
    for loader in (load_behavior, load_experiment):
        try:
            loader(path)
        except RarecastError:
            pass


@FAST
@given(
    spec=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "kind",
                "targets",
                "temperature",
                "options",
                "behavior_option",
                "k",
                "grader",
                "max_tokens",
                "top_p",
            ]
        ),
        json_values,
        max_size=6,
    )
)
def test_behavior_from_random_mappings(spec) -> None:
    from rarecast.elicitation.behaviors import load_behavior

    try:
        behavior = load_behavior(spec)
    except RarecastError:
        return
    assert behavior.name and isinstance(behavior.behavior_id, str)
    temperature = behavior.settings().get("temperature")
    assert temperature is None or math.isfinite(temperature)
