"""Data in and out, and failures (issue 17, part 4), through the real command line.

* Scoring runs whose queries fail: a real unreachable port (127.0.0.1:9, where nothing listens) makes every
  query fail; a small HTTP server in this process, speaking the completions API, makes chosen queries fail
  (an HTTP 400 for prompts that contain "refuse") while the others are scored. The backend, the retry
  client, the scoring loops and the store are rarecast's own; the server is scripted because a real model
  server cannot be told to refuse one prompt.
* Score and query files that are nested past JSON's depth or mix score kinds: real files in tmp_path.

Each case checks the exit status, the one line on stderr (file, row and problem, or the failure count and
its most common reason) and what is left on disk.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cli_helpers import run_cli, run_process
from loopback import LoopbackServer

from rarecast.elicitation.failures import FailureLimit
from rarecast.errors import InputError

DOWN = "openai:http://127.0.0.1:9/v1/m"  # the discard port: connection refused
UNREACHABLE = (
    "ServerError: could not reach http://127.0.0.1:9/v1/completions after 1 attempt(s) "
    "(ConnectError: [Errno 111] Connection refused); is the server running?"
)
EXACT = "name: says-sure\nkind: specific_output\ntargets: ['Sure']\n"
SAMPLED = "name: says-sure\nkind: sampled\nk: 12\ngrader: {kind: regex, pattern: Sure}\n"


def rarecast(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd)


def error_line(done: subprocess.CompletedProcess, status: int) -> str:
    """The run's single ``rarecast: error:`` line, after checking the exit status and that nothing crashed."""
    assert done.returncode == status, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("rarecast: error: ")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def store_rows(store: Path) -> tuple[list[str], dict[str, str]]:
    """Query ids with a stored result, and failed query id -> reason."""
    con = sqlite3.connect(store)
    try:
        results = [r[0] for r in con.execute("SELECT query_id FROM results ORDER BY query_id")]
        failures = dict(con.execute("SELECT query_id, reason FROM failures"))
    finally:
        con.close()
    return results, failures


def write_inputs(folder: Path, prompts: list[str], behavior: str = EXACT) -> tuple[Path, Path]:
    queries, beh = folder / "q.jsonl", folder / "b.yaml"
    queries.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    beh.write_text(behavior)
    return queries, beh


# ----------------------------------------------------------------------------------------------------------
# Every query fails: an unreachable server


def test_a_run_whose_every_query_failed_exits_1_and_says_why(tmp_path):
    queries, behavior = write_inputs(tmp_path, ["hello", "what is the password?"])
    store = tmp_path / "run.db"
    done = rarecast("score", queries, "-b", behavior, "-s", store, "--model", DOWN, "--no-progress")
    line = error_line(done, 1)
    assert (
        line == f"rarecast: error: 2 of 2 queries failed; most common: {UNREACHABLE} (2); the store's failures "
        "table lists each query"
    )
    assert "scored / failed" in done.stderr  # the end-of-run summary still shows, above the error
    results, failures = store_rows(store)
    assert results == [] and set(failures) == {"q0", "q1"}
    assert set(failures.values()) == {UNREACHABLE}


def test_max_failures_lets_a_run_pass_and_the_summary_still_names_the_reason(tmp_path):
    queries, behavior = write_inputs(tmp_path, ["hello", "what is the password?"])
    done = rarecast(
        "score",
        queries,
        "-b",
        behavior,
        "-s",
        tmp_path / "run.db",
        "--model",
        DOWN,
        "--no-progress",
        "--max-failures",
        "1.0",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"\n2 of 2 queries failed; most common: {UNREACHABLE} (2)\n" in done.stderr
    assert "rarecast: error" not in done.stderr


def test_the_adaptive_policy_follows_the_same_rule(tmp_path):
    queries, behavior = write_inputs(tmp_path, ["hello", "what is the password?"], SAMPLED)
    store = tmp_path / "run.db"
    done = rarecast("score", queries, "-b", behavior, "-s", store, "--model", DOWN, "--adaptive", "--no-progress")
    assert error_line(done, 1).startswith(f"rarecast: error: 2 of 2 queries failed; most common: {UNREACHABLE} (2)")
    results, failures = store_rows(store)
    assert results == [] and set(failures) == {"q0", "q1"}


def test_an_experiment_whose_scoring_failed_writes_no_forecast(tmp_path):
    queries, behavior = write_inputs(tmp_path, ["hello", "what is the password?"])
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(f"name: down\nqueries: {queries.name}\nmodel: {DOWN}\nbehavior: {behavior.name}\nout: out\n")
    done = rarecast("run", experiment, "--no-progress")
    assert error_line(done, 1).startswith(f"rarecast: error: 2 of 2 queries failed; most common: {UNREACHABLE}")
    # the queries and the store with its failures; no forecast.json, no report.html
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["queries.jsonl", "run.db"]
    results, failures = store_rows(tmp_path / "out" / "run.db")
    assert results == [] and len(failures) == 2


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # beside the Ray engine's own tests: one local Ray per worker
def test_the_ray_engine_follows_the_same_rule(tmp_path):
    """A local Ray instance started by the driver, as tests/test_ray_engine.py does; no model is loaded (the
    scorer actors hold an HTTP backend whose server is down)."""
    pytest.importorskip("ray")
    queries, behavior = write_inputs(tmp_path, ["hello", "what is the password?", "hi"])
    store = tmp_path / "run.db"
    done = run_process(  # a real process: Ray stays up in the process that started it
        "score",
        queries,
        "-b",
        behavior,
        "-s",
        store,
        "--model",
        DOWN,
        "--engine",
        "ray",
        "--workers",
        "1",
        "--chunk-size",
        "2",
        "--no-progress",
        timeout=600,
    )
    assert error_line(done, 1).startswith(f"rarecast: error: 3 of 3 queries failed; most common: {UNREACHABLE} (3)")
    results, failures = store_rows(store)
    assert results == [] and set(failures) == {"q0", "q1", "q2"}


@pytest.mark.parametrize(
    "value, words",
    [
        ("abc", "--max-failures must be a count (5) or a fraction of the queries (0.1), got 'abc'"),
        ("-1", "--max-failures must be a count (5) or a fraction of the queries (0.1), got '-1'"),
        ("2.5", "--max-failures as a fraction must lie in [0, 1], got '2.5'; a count has no decimal point"),
    ],
)
def test_a_bad_max_failures_is_a_usage_error_before_anything_runs(tmp_path, value, words):
    queries, behavior = write_inputs(tmp_path, ["hello"])
    done = rarecast(
        "score", queries, "-b", behavior, "-s", tmp_path / "run.db", "--model", DOWN, "--max-failures", value
    )
    assert error_line(done, 2) == f"rarecast: error: {words}"
    assert not (tmp_path / "run.db").exists()


def test_failure_limits_count_the_whole_query_set():
    default, count, fraction = FailureLimit(), FailureLimit.parse("2"), FailureLimit.parse("0.25")
    assert (count.count, fraction.fraction) == (2, 0.25)
    assert not default.exceeded(9, 10) and default.exceeded(10, 10) and not default.exceeded(0, 0)
    assert not count.exceeded(2, 10) and count.exceeded(3, 10)
    assert not fraction.exceeded(1, 4) and fraction.exceeded(2, 4)
    assert FailureLimit.parse("0").exceeded(1, 1000) and not FailureLimit.parse("0").exceeded(0, 1000)
    with pytest.raises(InputError, match="not both"):
        FailureLimit(count=1, fraction=0.5)


# ----------------------------------------------------------------------------------------------------------
# Some queries fail: a completions server that refuses some prompts


class CompletionsServer(LoopbackServer):
    """Answers the completions API like a model whose every character has log p -0.1 and whose every reply is
    "Sure"; prompts containing "refuse" get HTTP 400."""

    def __init__(self) -> None:
        super().__init__(self._handler())

    @property
    def model(self) -> str:
        return f"openai:{self.url}/v1/m"

    @staticmethod
    def answer(payload: dict) -> tuple[int, dict]:
        prompt = payload["prompt"]
        if "refuse" in prompt:
            return 400, {"error": {"message": "prompt refused by policy"}}
        if payload.get("echo"):  # exact scoring: the text echoed a character a token, then one generated token
            tokens = [*prompt, "!"]
            offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
            logprobs = {"tokens": tokens, "token_logprobs": [None] + [-0.1] * (len(tokens) - 1), "text_offset": offsets}
            return 200, {
                "choices": [{"text": "".join(tokens), "logprobs": logprobs}],
                "usage": {"completion_tokens": 1},
            }
        return 200, {"choices": [{"text": "Sure"}] * int(payload.get("n", 1))}

    def _handler(self):
        answer = self.answer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, reply = answer(json.loads(body))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        return Handler


@pytest.fixture
def server() -> Iterator[CompletionsServer]:
    srv = CompletionsServer()
    yield srv
    srv.close()


PROMPTS = ["hello", "please refuse this", "what is the password?", "tell me"]


def refused(server: CompletionsServer) -> str:
    port = server.httpd.server_address[1]
    return f"QueryError: http://127.0.0.1:{port}/v1/completions answered 400: prompt refused by policy"


@pytest.mark.parametrize("engine", ["local", "adaptive"])
def test_some_failures_pass_by_default_and_name_the_most_common_reason(tmp_path, server, engine):
    queries, behavior = write_inputs(tmp_path, PROMPTS, EXACT if engine == "local" else SAMPLED)
    store = tmp_path / "run.db"
    extra = ["--adaptive"] if engine == "adaptive" else []
    done = rarecast("score", queries, "-b", behavior, "-s", store, "--model", server.model, "--no-progress", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"\n1 of 4 queries failed; most common: {refused(server)} (1)\n" in done.stderr
    results, failures = store_rows(store)
    assert results == ["q0", "q2", "q3"] and failures == {"q1": refused(server)}


@pytest.mark.parametrize("engine", ["local", "adaptive"])
@pytest.mark.parametrize("limit, allowed", [("0", "more than the 0 allowed"), ("0.2", "more than the 20% allowed")])
def test_max_failures_below_the_failures_fails_the_run(tmp_path, server, engine, limit, allowed):
    queries, behavior = write_inputs(tmp_path, PROMPTS, EXACT if engine == "local" else SAMPLED)
    store = tmp_path / "run.db"
    extra = ["--adaptive"] if engine == "adaptive" else []
    done = rarecast(
        "score",
        queries,
        "-b",
        behavior,
        "-s",
        store,
        "--model",
        server.model,
        "--no-progress",
        "--max-failures",
        limit,
        *extra,
    )
    assert error_line(done, 1) == (
        f"rarecast: error: 1 of 4 queries failed ({allowed}); most common: "
        f"{refused(server)} (1); the store's failures table lists each query"
    )
    results, failures = store_rows(store)
    assert results == ["q0", "q2", "q3"] and list(failures) == ["q1"]  # what was scored stays stored


def test_a_rerun_is_judged_on_the_whole_query_set(tmp_path, server):
    """The rerun skips the 3 stored queries and retries the refused one, which fails again: 1 of 4 failed, as
    in the first run (not 1 of 1, which would fail the rerun as if nothing had been scored)."""
    queries, behavior = write_inputs(tmp_path, PROMPTS)
    store = tmp_path / "run.db"
    args = [
        "score",
        queries,
        "-b",
        behavior,
        "-s",
        store,
        "--model",
        server.model,
        "--no-progress",
        "--max-failures",
        "0.25",
    ]
    assert rarecast(*args).returncode == 0
    again = rarecast(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (
        "4 (3 already done)" in again.stderr
        and f"\n1 of 4 queries failed; most common: {refused(server)} (1)\n" in again.stderr
    )


# ----------------------------------------------------------------------------------------------------------
# Files: nested past JSON's depth, mixed score kinds

NESTED = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_score_line_is_a_clean_error_naming_the_row(tmp_path):
    scores = tmp_path / "scores.jsonl"
    scores.write_text('{"id": "a", "logp": -1.0}\n{"id": "b", "logp": -2.0, "meta": ' + NESTED + "}\n")
    done = rarecast("forecast", scores)
    assert error_line(done, 2) == (
        f"rarecast: error: {scores}, row 2: JSON nested too deeply to read (over about "
        "1,000 levels of arrays or objects)"
    )
    assert done.stdout == ""


def test_a_deeply_nested_query_line_is_a_clean_error_and_writes_no_store(tmp_path):
    queries, behavior = write_inputs(tmp_path, ["hello"])
    with open(queries, "a") as fh:
        fh.write(NESTED + "\n")
    done = rarecast("score", queries, "-b", behavior, "-s", tmp_path / "run.db", "--model", DOWN)
    assert error_line(done, 2) == (
        f"rarecast: error: {queries}, row 2: JSON nested too deeply to read (over about "
        "1,000 levels of arrays or objects)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.yaml", "q.jsonl"]


@pytest.mark.parametrize(
    "content, row, problem",
    [
        (
            '{"id": "a", "logp": -1}\n{"id": "b", "logp": -2}\n{"id": "c", "successes": 1, "trials": 5}\n',
            3,
            "holds counts ('successes', 'trials') but row 1 holds an exact log p ('logp'); "
            "a score table holds one kind",
        ),
        (
            '{"id": "a", "successes": 1, "trials": 5}\n{"id": "b", "logp": -2}\n',
            2,
            "holds an exact log p ('logp') but row 1 holds counts ('successes', 'trials'); "
            "a score table holds one kind",
        ),
        (
            '{"id": "a", "logp": -1}\n{"id": "b", "logp": -2, "successes": 1, "trials": 5}\n',
            2,
            "holds both an exact score (logp) and counts (successes, trials); a row holds one kind of score",
        ),
    ],
)
def test_every_score_row_is_checked_for_its_kind(tmp_path, content, row, problem):
    scores = tmp_path / "scores.jsonl"
    scores.write_text(content)
    done = rarecast("forecast", scores, "--json")
    assert error_line(done, 2).startswith(f"rarecast: error: {scores}, row {row}: {problem}")
    assert done.stdout == ""
