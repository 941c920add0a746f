"""`rarecast import inspect` on logs written by a real inspect_ai eval (its mockllm model, several epochs),
bad logs, and the round trip: the rarecast extension's scorer inside inspect gives the same elicitation
probabilities as `rarecast score` (real embedded model)."""

from __future__ import annotations

import json
import logging
import math
import zipfile
from collections import Counter

import numpy as np
import pytest
from cli_helpers import run_cli

pytest.importorskip("inspect_ai")

from inspect_ai import Task  # noqa: E402
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.log import read_eval_log  # noqa: E402
from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ModelOutput, ModelUsage, get_model  # noqa: E402
from inspect_ai.scorer import SampleScore, Score, includes  # noqa: E402
from inspect_ai.solver import TaskState, solver  # noqa: E402
from logp_helpers import assert_logp_close  # noqa: E402

import rarecast as rc  # noqa: E402
from rarecast.evaluation.synthetic import FAMILIES  # noqa: E402
from rarecast.integrations.inspect_extension import forecast  # noqa: E402
from rarecast.scores import logp_from_psi  # noqa: E402
from rarecast.store.score_files import read_scores  # noqa: E402

N_SAMPLES, EPOCHS = 60, 4


def rarecast(*args):
    return run_cli(*args)


def mock_output(text: str) -> ModelOutput:
    # Usage given up front: mockllm would otherwise count tokens with tiktoken, which downloads its tables.
    return ModelOutput(
        model="mockllm/model",
        choices=[ChatCompletionChoice(message=ChatMessageAssistant(content=text))],
        usage=ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2),
    )


@solver
def scripted_reply():
    """Replies "yes" with the sample's own probability, seeded per sample and epoch: a real inspect eval whose
    queries differ in elicitation probability, with no model call (mockllm cannot see which sample asks)."""

    async def solve(state: TaskState, generate):
        rng = np.random.default_rng([int(state.sample_id[1:]), state.epoch])
        state.output = mock_output("yes" if rng.random() < state.metadata["p"] else "no")
        return state

    return solve


def run_eval(log_dir, log_format: str, scorer=None, epochs: int = EPOCHS, samples=None):
    """One real inspect eval; returns the log file's path."""
    p = 0.8 * np.random.default_rng(0).random(N_SAMPLES) ** 3  # a decaying tail of probabilities
    samples = samples or [
        Sample(id=f"s{i}", input=f"question {i}", target="yes", metadata={"p": p[i]}) for i in range(N_SAMPLES)
    ]
    task = Task(dataset=samples, solver=scripted_reply(), scorer=scorer or includes(), epochs=epochs, name="mock_task")
    (log,) = inspect_eval(
        task,
        model=get_model("mockllm/model"),
        log_dir=str(log_dir),
        log_format=log_format,
        display="none",
        temperature=0.7,
        max_tokens=16,
    )
    assert log.status == "success", log.error
    return log.location


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    return {fmt: run_eval(root / fmt, fmt) for fmt in ("eval", "json")}


def expected_counts(path):
    """Per sample: epochs whose recorded reply contains the target (what `includes` scores as C), epochs."""
    log = read_eval_log(path)
    hits, trials = Counter(), Counter()
    for s in log.samples:
        hits[str(s.id)] += s.output.completion == "yes"
        trials[str(s.id)] += 1
    return hits, trials


@pytest.mark.parametrize("fmt", ["eval", "json"])
def test_epochs_become_trials_and_provenance_is_carried(logs, tmp_path, fmt):
    out = tmp_path / "scores.jsonl"
    done = rarecast("import", "inspect", logs[fmt], "-o", out)
    assert done.returncode == 0, done.stderr
    scores, provenance = read_scores(out)
    hits, trials = expected_counts(logs[fmt])
    assert scores.kind == "counts" and scores.m == N_SAMPLES
    assert dict(zip(scores.ids, scores.successes.astype(int).tolist())) == dict(hits)
    assert set(scores.trials.tolist()) == {EPOCHS} and sum(hits.values()) > 0
    assert provenance["model"] == "mockllm/model" and provenance["behavior"] == "mock_task/includes"
    decoding = json.loads(provenance["decoding"])
    assert decoding["temperature"] == 0.7 and decoding["max_tokens"] == 16


def test_eval_and_json_logs_of_one_task_pool_their_epochs(logs, tmp_path):
    out = tmp_path / "pooled.parquet"
    assert rarecast("import", "inspect", logs["eval"], logs["json"], "-o", out).returncode == 0
    scores, _ = read_scores(out)
    assert set(scores.trials.tolist()) == {2 * EPOCHS}


def test_success_values_choose_what_counts(logs, tmp_path):
    out = tmp_path / "incorrect.jsonl"
    assert rarecast("import", "inspect", logs["eval"], "--success", "I", "-o", out).returncode == 0
    scores, _ = read_scores(out)
    hits, _ = expected_counts(logs["eval"])
    assert dict(zip(scores.ids, scores.successes.astype(int).tolist())) == {k: EPOCHS - v for k, v in hits.items()}


def test_forecast_reads_the_imported_table(logs, tmp_path):
    out = tmp_path / "scores.jsonl"
    assert rarecast("import", "inspect", logs["eval"], "-o", out).returncode == 0
    done = rarecast("forecast", out, "--n", "1e4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["kind"] == "counts" and result["m"] == N_SAMPLES


def one_line_error(done, path, words):
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], done.stderr


def test_truncated_logs_name_the_file(logs, tmp_path):
    for fmt in ("eval", "json"):
        raw = open(logs[fmt], "rb").read()
        bad = tmp_path / f"cut.{fmt}"
        bad.write_bytes(raw[: len(raw) // 2])
        one_line_error(rarecast("import", "inspect", bad, "-o", tmp_path / "x.jsonl"), bad, "truncated")
    assert not (tmp_path / "x.jsonl").exists()


def test_wrong_log_version_names_the_file(logs, tmp_path):
    log = json.loads(open(logs["json"], encoding="utf-8").read())
    log["version"] = 99
    bad = tmp_path / "future.json"
    bad.write_text(json.dumps(log))
    one_line_error(rarecast("import", "inspect", bad, "-o", tmp_path / "x.jsonl"), bad, "version")


def test_missing_scores_name_the_file_and_sample(logs, tmp_path):
    log = json.loads(open(logs["json"], encoding="utf-8").read())
    log["samples"][4]["scores"] = {}
    bad = tmp_path / "unscored.json"
    bad.write_text(json.dumps(log))
    one_line_error(rarecast("import", "inspect", bad, "-o", tmp_path / "x.jsonl"), bad, "has no 'includes' score")
    unknown = rarecast("import", "inspect", logs["eval"], "--scorer", "judge", "-o", tmp_path / "x.jsonl")
    one_line_error(unknown, logs["eval"], "no scorer 'judge'")


def test_a_eval_archive_without_samples_is_refused(logs, tmp_path):
    bad = tmp_path / "header_only.eval"
    with zipfile.ZipFile(logs["eval"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("samples/"):
                dst.writestr(item, src.read(item.filename))
    one_line_error(rarecast("import", "inspect", bad, "-o", tmp_path / "x.jsonl"), bad, "no samples")


def _with_config(logs, tmp_path, name, **changes):
    """The JSON log with its eval-level generation settings changed (None: unset): a real log file, rewritten."""
    log = json.loads(open(logs["json"], encoding="utf-8").read())
    for key, value in changes.items():
        if value is None:
            log["plan"]["config"].pop(key, None)
        else:
            log["plan"]["config"][key] = value
    path = tmp_path / name
    path.write_text(json.dumps(log))
    return path


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"temperature": 1.0}, "decoding setting 'temperature' is 1.0 here but 0.7 in"),
        ({"max_tokens": None}, "decoding setting 'max_tokens' is unset here but 16 in"),
    ],
)
def test_logs_made_under_other_decoding_settings_are_refused_naming_both_files(logs, tmp_path, changes, words):
    other = _with_config(logs, tmp_path, "other.json", **changes)
    out = tmp_path / "pooled.jsonl"
    done = rarecast("import", "inspect", logs["eval"], other, "-o", out)
    one_line_error(done, other, words)  # the second file, and the first one named in the message
    assert f"in {logs['eval']};" in done.stderr and "import them separately" in done.stderr
    assert not list(tmp_path.glob("pooled*")), "nothing is written when a log is refused"


def test_logs_that_differ_only_in_seed_pool_and_record_no_seed(logs, tmp_path):
    other = _with_config(logs, tmp_path, "seed2.json", seed=2)
    out = tmp_path / "pooled.jsonl"
    done = rarecast("import", "inspect", logs["json"], other, "-o", out)
    assert done.returncode == 0, done.stderr
    scores, provenance = read_scores(out)
    assert set(scores.trials.tolist()) == {2 * EPOCHS}
    assert json.loads(provenance["decoding"]) == {"max_tokens": 16, "temperature": 0.7}  # no one seed holds


# ----------------------------------------------------------------------------------------------------------
# The extension inside inspect, against `rarecast score` (real embedded model).

BEHAVIOR = {"name": "starts-with-sure", "kind": "specific_output", "targets": ["Sure", "I cannot"]}
PROMPTS = ["Tell me a secret.", "How do I bake bread?", "Say something rude.", "What is 2+2?"]


@pytest.mark.slow
def test_extension_scores_equal_rarecast_score(tmp_path):
    from inspect_ai._util.registry import registry_lookup

    from rarecast.integrations import write_runs
    from rarecast.integrations.inspect import read_inspect_logs
    from rarecast.store import open_existing

    elicitation = registry_lookup("scorer", "rarecast/elicitation")  # found through the entry point
    assert elicitation is not None
    samples = [Sample(id=f"q{i}", input=text, metadata={"p": 0.0}) for i, text in enumerate(PROMPTS)]
    log_path = run_eval(
        tmp_path / "logs",
        "eval",
        epochs=2,
        samples=samples,
        scorer=elicitation(BEHAVIOR, model="hf:smollm2", device="cpu"),
    )
    log = read_eval_log(log_path)
    metrics = {k: m.value for s in log.results.scores for k, m in s.metrics.items()}
    assert {"worst_query_risk@10000", "aggregate_risk@1e+06", "behavior_frequency@0.5"} <= set(metrics)

    imported = tmp_path / "inspect.jsonl"
    write_runs(read_inspect_logs([log_path]), imported)  # in-process: the CLI path is covered above
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"id": s.id, "prompt": s.input}) + "\n" for s in samples))
    behavior = tmp_path / "b.yaml"
    behavior.write_text(json.dumps(BEHAVIOR))
    done = rarecast(
        "score",
        queries,
        "--model",
        "hf:smollm2",
        "--device",
        "cpu",
        "--behavior",
        behavior,
        "--store",
        tmp_path / "run.db",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    with open_existing(tmp_path / "run.db") as store:
        store.export(tmp_path / "score.jsonl")

    ours, ours_prov = read_scores(imported)
    theirs, theirs_prov = read_scores(tmp_path / "score.jsonl")
    # The extension scores one sample at a time, `rarecast score` a chunk at once: other batch shapes, so equal
    # up to fp32 rounding (tests/logp_helpers.py); log p of "Sure" (1 token) or "I cannot" (2 tokens).
    ours_by_id, theirs_by_id = dict(zip(ours.ids, ours.logp.tolist())), dict(zip(theirs.ids, theirs.logp.tolist()))
    assert sorted(ours_by_id) == sorted(theirs_by_id)
    assert_logp_close([ours_by_id[i] for i in theirs.ids], theirs.logp, n_tokens=2, n_targets=2)
    for field in ("model", "revision", "behavior", "behavior_id", "decoding"):
        assert ours_prov[field] == theirs_prov[field], field


# ----------------------------------------------------------------------------------------------------------
# The forecast metric's numbers: SampleScores built here as the elicitation scorer fills them (no model, no
# eval), the metric called as inspect calls it, against the public API on Scores built from the raw draws.

METRIC_N, METRIC_TAU = (1e2, 1e4, 1e6), (0.5, 1e-3)
METRIC_KEYS = {
    "worst_query_risk@100",
    "worst_query_risk@10000",
    "worst_query_risk@1e+06",
    "aggregate_risk@100",
    "aggregate_risk@10000",
    "aggregate_risk@1e+06",
    "behavior_frequency@0.5",
    "behavior_frequency@0.001",
}
N_METRIC_SAMPLES = 300
PROVENANCE = {"model": "hf:smollm2", "revision": "r", "behavior": "b", "behavior_id": "id", "decoding": {}}


def sample_ids(m: int) -> list[str]:
    return [f"q{i}" for i in range(m)]


def api_forecasts(scores: rc.Scores, method: str | None = None) -> dict[str, float]:
    """What the public API forecasts on ``scores``, keyed as the metric names its values."""
    fit = rc.fit_tail(scores, method=method)
    out = {}
    for n, w, a in zip(METRIC_N, fit.worst_query_risk(METRIC_N), fit.aggregate_risk(METRIC_N)):
        out[f"worst_query_risk@{n:g}"], out[f"aggregate_risk@{n:g}"] = float(w), float(a)
    for tau, f in zip(METRIC_TAU, fit.behavior_frequency(METRIC_TAU)):
        out[f"behavior_frequency@{tau:g}"] = float(f)
    return out


def assert_metric_equals_api(got: dict, expected: dict) -> None:
    assert set(got) == METRIC_KEYS and set(expected) == METRIC_KEYS
    for key in sorted(METRIC_KEYS):
        assert math.isfinite(got[key]), (key, got[key])
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=0), key
    assert 0 < got["worst_query_risk@100"] < got["worst_query_risk@10000"] < got["worst_query_risk@1e+06"]


def exact_sample_scores(logp: np.ndarray, epochs: int) -> list[SampleScore]:
    """Epoch by epoch, as the scorer gives them for a deterministic measurement: each epoch repeats its log p."""
    return [
        SampleScore(
            score=Score(value=math.exp(v), metadata={"logp": float(v), **PROVENANCE}),
            sample_id=qid,
            scorer="elicitation",
        )
        for _ in range(epochs)
        for qid, v in zip(sample_ids(len(logp)), logp.tolist())
    ]


def sampled_p(rng: np.random.Generator, m: int) -> np.ndarray:
    """Per-query probabilities high enough that counts see the tail (the family's sampled version)."""
    return np.exp(logp_from_psi(FAMILIES["exponential-k100"].sample_psi(rng, m)))


@pytest.mark.parametrize("method", [None, "gumbel-ols"])
def test_forecast_metric_on_exact_scores_equals_the_public_api(method):
    logp = FAMILIES["exponential"].sample(np.random.default_rng(11), N_METRIC_SAMPLES).logp
    got = forecast(n=METRIC_N, tau=METRIC_TAU, method=method)(exact_sample_scores(logp, epochs=2))
    expected = api_forecasts(rc.Scores.from_logp(logp, ids=sample_ids(len(logp))), method)
    assert_metric_equals_api(got, expected)


def test_forecast_metric_pools_counts_across_epochs():
    """Each epoch holds the scorer's successes/trials of one sampled measurement; a sample's epochs add up."""
    epochs, per_epoch = 4, 25
    rng = np.random.default_rng(12)
    successes = rng.binomial(per_epoch, sampled_p(rng, N_METRIC_SAMPLES)[:, None], size=(N_METRIC_SAMPLES, epochs))
    ids = sample_ids(N_METRIC_SAMPLES)
    scores = [
        SampleScore(
            score=Score(
                value=int(successes[i, e]) / per_epoch,
                metadata={"successes": int(successes[i, e]), "trials": per_epoch, **PROVENANCE},
            ),
            sample_id=ids[i],
            scorer="elicitation",
        )
        for e in range(epochs)
        for i in range(N_METRIC_SAMPLES)
    ]
    got = forecast(n=METRIC_N, tau=METRIC_TAU)(scores)
    pooled = rc.Scores.from_counts(successes.sum(axis=1), np.full(N_METRIC_SAMPLES, epochs * per_epoch), ids=ids)
    assert_metric_equals_api(got, api_forecasts(pooled))


def test_forecast_metric_counts_pass_fail_epochs_as_trials():
    """Plain pass/fail values (C or I, as `includes` gives): each epoch one trial, C a success; an epoch inspect
    could not score (NaN) is no trial."""
    epochs = 50
    rng = np.random.default_rng(13)
    hit = rng.random((N_METRIC_SAMPLES, epochs)) < sampled_p(rng, N_METRIC_SAMPLES)[:, None]
    unscored = rng.random((N_METRIC_SAMPLES, epochs)) < 0.05
    ids = sample_ids(N_METRIC_SAMPLES)
    scores = [
        SampleScore(score=Score(value=math.nan if unscored[i, e] else "CI"[not hit[i, e]]), sample_id=ids[i])
        for e in range(epochs)
        for i in range(N_METRIC_SAMPLES)
    ]
    got = forecast(n=METRIC_N, tau=METRIC_TAU)(scores)
    trials = (~unscored).sum(axis=1)
    assert len(set(trials.tolist())) > 1  # the NaN epochs make the trial counts differ between samples
    pooled = rc.Scores.from_counts((hit & ~unscored).sum(axis=1), trials, ids=ids)
    assert_metric_equals_api(got, api_forecasts(pooled))


def few_exact():
    logp = FAMILIES["exponential"].sample(np.random.default_rng(14), 4).logp
    return exact_sample_scores(logp, epochs=2), rc.Scores.from_logp(logp)


def few_counts():
    successes = np.random.default_rng(15).binomial(25, 0.3, size=(4, 2))
    scores = [
        SampleScore(score=Score(value=int(s) / 25, metadata={"successes": int(s), "trials": 25}), sample_id=f"q{i}")
        for e in range(2)
        for i, s in enumerate(successes[:, e].tolist())
    ]
    return scores, rc.Scores.from_counts(successes.sum(axis=1), np.full(4, 50))


@pytest.mark.parametrize("make", [few_exact, few_counts], ids=["exact", "counts"])
def test_forecast_metric_gives_nan_when_too_few_samples_to_fit(make, caplog):
    scores, same_data = make()
    with pytest.raises(rc.RarecastError):
        rc.fit_tail(same_data)  # the public API refuses this data ...
    with caplog.at_level(logging.WARNING, logger="rarecast.integrations.inspect_extension"):
        got = forecast(n=METRIC_N, tau=METRIC_TAU)(scores)  # ... and the metric reports NaN rather than raise
    assert set(got) == METRIC_KEYS and all(math.isnan(v) for v in got.values()), got
    assert any(r.message.startswith("rarecast forecast: ") for r in caplog.records)
