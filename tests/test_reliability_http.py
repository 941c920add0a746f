"""Crash safety and faulty servers for the HTTP backend, against a real llama.cpp server on 127.0.0.1 (issue 8).

Reuses the server helpers and the fault proxy of ``test_backends_http.py`` and extends the proxy with what
that module does not cover:

* faults on the socket, produced for real: connection resets (SO_LINGER 0, so the kernel sends RST), stalls
  past the client's timeout, and bodies cut off before their Content-Length;
* ``/apply-template``, which llama.cpp's own ``llama-server`` serves and llama-cpp-python's server does not:
  the proxy renders the chat with the template stored in the served GGUF file (as llama-server does), so that
  `rarecast score --model openai:...` runs unmodified from the command line;
* a count of the requests in flight.

Everything the proxy does not fault is forwarded, so every number stored comes from the model.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from test_backends_http import FAST_RETRY, Fault, FaultProxy
from test_reliability_crash import (
    CLI,
    assert_rows_match,
    audit_store,
    kill_chain,
    run_concurrently,
    uninterrupted_run,
    write_report_line,
)

# xdist: in the worker that holds the session's llama.cpp server, so that one server serves every module
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("llama-server")]
# Short chats and one target: llama-cpp-python's echo path sorts the whole vocabulary in Python for every
# prompt token (about 2 s a request on this busy 2-core machine), so every token costs.
N_QUERIES = 8
# With the hf chain's KILLS, the 20 SIGKILLs at least.
KILLS = 10


@dataclass
class SocketFault:
    """Do ``action`` ("reset", "stall" or "truncate") to requests whose body contains ``match``, ``times`` times."""

    match: str
    action: str
    times: int = 1_000_000
    stall_s: float = 5.0


class ReliabilityProxy(FaultProxy):
    """The fault proxy plus socket faults, ``/apply-template`` and an in-flight count."""

    def __init__(self, upstream: str, chat_template: str):
        import jinja2.sandbox

        self.template = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(chat_template)
        self.socket_faults: list[SocketFault] = []
        self.in_flight = self.max_in_flight = 0
        self.released = threading.Event()
        super().__init__(upstream)
        self.httpd.handle_error = lambda request, address: None  # clients killed mid-reply: expected here

    def reset(self, *faults: Fault, socket_faults: tuple[SocketFault, ...] = ()) -> None:
        with self.lock:
            self.socket_faults = list(socket_faults)
            self.in_flight = self.max_in_flight = 0
        super().reset(*faults)

    def close(self) -> None:
        self.released.set()  # end any stall at once
        super().close()

    def respond(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        if path.endswith("/apply-template"):
            messages = json.loads(body)["messages"]
            prompt = self.template.render(messages=messages, add_generation_prompt=True)
            return 200, json.dumps({"prompt": prompt}).encode(), {}
        return super().respond(path, body, headers)

    def _socket_fault(self, path: str, body: bytes) -> SocketFault | None:
        if path.endswith("/apply-template"):
            return None
        text = body.decode("utf-8", "replace")
        with self.lock:
            fault = next((f for f in self.socket_faults if f.match in text and f.times > 0), None)
            if fault is not None:
                fault.times -= 1
                self.log.append((time.monotonic(), text, fault.action, {}))
        return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        base = super()._handler()

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:  # noqa: N802
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                self.counted = True
                try:
                    self._serve()
                finally:
                    self._leave()

            def _leave(self) -> None:
                # Called just before the last byte goes out (and again, harmlessly, at the end): once the
                # client has its answer it may start its next request at once, before this thread would
                # otherwise get round to counting this one out, and the proxy would see one request too many.
                if self.counted:
                    self.counted = False
                    with proxy.lock:
                        proxy.in_flight -= 1

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                fault = proxy._socket_fault(self.path, body)
                if fault is None:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    status, payload, extra = proxy.respond(self.path, body, headers)
                    self._send(status, payload, extra)
                elif fault.action == "reset":  # abortive close: the kernel answers with RST
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self._leave()
                    self.connection.close()
                elif fault.action == "stall":  # hold the request past the client's timeout, then drop it
                    self._hold_until_client_leaves(fault.stall_s)
                    self.close_connection = True
                elif fault.action == "truncate":  # promise 4 KB, send 20 bytes of JSON, hang up
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "4096")
                    self.end_headers()
                    self._leave()
                    self.wfile.write(b'{"choices": [{"text"')
                    self.close_connection = True
                else:
                    raise AssertionError(fault.action)

            def _hold_until_client_leaves(self, limit_s: float) -> None:
                # Stop at the client's hang-up: a request it abandoned at its timeout is no longer in flight
                # on its side, so counting it on ours would charge the client's bound with our stall.
                end = time.monotonic() + limit_s
                while time.monotonic() < end and not proxy.released.is_set():
                    ready, _, _ = select.select([self.connection], [], [], 0.1)
                    if ready and not self.connection.recv(1, socket.MSG_PEEK):
                        return

            def _send(self, status: int, payload: bytes, extra: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {"content-type": "application/json", **extra}.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self._leave()
                self.wfile.write(payload)

            def finish(self) -> None:
                try:
                    super().finish()
                except OSError:  # the socket was reset on purpose
                    pass

        return Handler


# -- fixtures: the session's llama.cpp server (tests/conftest.py) behind one proxy for this module ----------


@pytest.fixture(scope="module")
def chat_template(gguf: Path) -> str:
    """The chat template stored in the served GGUF (what llama-server's /apply-template renders with)."""
    import gguf as gguf_lib

    field = gguf_lib.GGUFReader(gguf).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


@pytest.fixture(scope="module")
def proxy(llama_server: str, chat_template: str) -> Iterator[ReliabilityProxy]:
    p = ReliabilityProxy(llama_server, chat_template)
    try:
        yield p
    finally:
        p.close()


def _write_inputs(tmp_path: Path, n: int = N_QUERIES) -> tuple[Path, Path]:
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i:02d}",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": f"Task {i:02d}:"},
                    ],
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    behavior = tmp_path / "behavior.yaml"
    behavior.write_text('name: starts-with-sure\nkind: specific_output\ntargets: ["Sure"]\n')
    return queries, behavior


# -- 1. crash safety through the command line -----------------------------------------------------------------


def test_http_score_survives_sigkill_chain_and_concurrent_writers(proxy: ReliabilityProxy, tmp_path: Path) -> None:
    proxy.reset()
    queries, behavior = _write_inputs(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    model = f"openai:{proxy.url}/v1/smollm2"

    def command(store: Path) -> list[str]:
        return [
            *CLI,
            "score",
            str(queries),
            "--model",
            model,
            "--behavior",
            str(behavior),
            "--store",
            str(store),
            "--chunk-size",
            "1",
            "--no-progress",
        ]

    reference, reference_s = uninterrupted_run(command, tmp_path, env, N_QUERIES)
    assert all(r[5] is not None and r[5] < 0 for r in reference.values())

    # Half the kills on progress (rows reached, then up to 0.3 s), half at a time drawn over the whole run.
    rng = random.Random(8_002)
    store, log = kill_chain(
        command, reference, tmp_path, kills=KILLS, rng=rng, env=env, time_window_s=(0.2, reference_s)
    )
    wall = run_concurrently([command(store), command(store)], env, tmp_path)
    got, failures = audit_store(store)
    assert sorted(got) == sorted(reference) and not failures
    assert_rows_match(got, reference)
    write_report_line(
        "http_sigkill_chain",
        {
            "kills": log.kills,
            "finished": log.finished,
            "rounds": log.rounds,
            "reference_run_s": round(reference_s, 1),
            "concurrent_finish_s": round(wall, 1),
            "events": log.events,
        },
    )
    print(
        f"\nhttp: {log.kills} SIGKILLs, {log.finished} finished, {log.rounds} round(s), reference {reference_s:.1f} s,"
        f" two writers {wall:.1f} s; {[(e['trigger'], e['rows_before'], e['rows_after']) for e in log.events]}"
    )


# -- 2. faulty servers through the scoring loop ----------------------------------------------------------------


def test_scoring_through_every_fault_stores_right_values_and_records_the_rest(
    proxy: ReliabilityProxy, tmp_path: Path
) -> None:
    from rarecast.backends.openai import make_backend
    from rarecast.elicitation.behaviors import load_behavior
    from rarecast.elicitation.scoring import score
    from rarecast.queries import load_queries
    from rarecast.store import Store

    queries_file, behavior_file = _write_inputs(tmp_path, 12)
    queries = load_queries(queries_file)
    behavior = load_behavior(behavior_file)

    def backend():
        return make_backend(f"openai:{proxy.url}/v1/smollm2", retry=FAST_RETRY, timeout_s=20.0, max_in_flight=3)

    proxy.reset()
    with Store(tmp_path / "clean.db") as st:
        score(queries, backend(), behavior, st, chunk_size=6, progress=False)
    reference, _ = audit_store(tmp_path / "clean.db")
    clean_max_in_flight = proxy.max_in_flight

    no_logprobs = json.dumps(
        {"choices": [{"index": 0, "text": "Sure", "logprobs": None}], "usage": {"completion_tokens": 1}}
    ).encode()
    proxy.reset(
        Fault("Task 00:", 429, b'{"error": {"message": "slow down"}}', {"retry-after": "1"}, times=1),
        Fault("Task 01:", 500, b"internal error", times=2),
        Fault("Task 02:", 503, b'{"error": {"message": "overloaded"}}', times=1),
        Fault("Task 06:", 200, b'{"choices": [{"text": "Sure", "logprobs": {"tokens": [', times=10**6),
        Fault("Task 07:", 200, no_logprobs),
        Fault("Task 08:", 503, b'{"error": {"message": "down for maintenance"}}'),
        Fault("Task 09:", 429, b'{"error": {"message": "quota"}}', {"retry-after": "3600"}),
        socket_faults=(
            SocketFault("Task 03:", "reset", times=2),
            SocketFault("Task 04:", "stall", times=1, stall_s=25.0),
            SocketFault("Task 05:", "truncate", times=1),
        ),
    )
    t0 = time.monotonic()
    with Store(tmp_path / "faulty.db") as st:
        first = score(queries, backend(), behavior, st, chunk_size=6, progress=False)
        pending_after = st.pending([q.id for q in queries], st_key(st))
    faulty_s = time.monotonic() - t0
    got, failures = audit_store(tmp_path / "faulty.db")
    reasons = dict(failures)

    # Transient faults were survived with the model's own numbers; permanent ones are failures, not numbers.
    permanent = {"q06", "q07", "q08", "q09"}
    assert set(got) == set(reference) - permanent
    assert_rows_match(got, reference)
    assert set(reasons) == permanent and first.failed == 4 and first.scored == 8
    assert "not JSON" in reasons["q06"]
    assert "no 'logprobs'" in reasons["q07"]
    assert f"503 on all {FAST_RETRY.max_attempts} attempts" in reasons["q08"] and "maintenance" in reasons["q08"]
    assert "asked to wait 3600 s" in reasons["q09"]
    assert sorted(pending_after) == sorted(permanent)

    # Each fault reached the client, and retries are bounded: per query at most max_attempts per pass, and
    # two passes (the chunk, then the query alone after the chunk failed).
    statuses = {
        m: [s for _, s in proxy.requests_matching(f"Task {m}:")]
        for m in ("00", "01", "02", "03", "04", "05", "08", "09")
    }
    assert statuses["00"][0] == 429 and statuses["01"][:2] == [500, 500] and statuses["02"][0] == 503
    assert statuses["03"][:2] == ["reset", "reset"] and "stall" in statuses["04"] and "truncate" in statuses["05"]
    assert statuses["08"] == [503] * len(statuses["08"])
    assert FAST_RETRY.max_attempts <= len(statuses["08"]) <= 2 * FAST_RETRY.max_attempts
    assert len(statuses["09"]) <= 2  # a Retry-After beyond the client's limit is not waited for, nor retried
    times_00 = [t for t, s in proxy.requests_matching("Task 00:")]
    assert times_00[1] - times_00[0] >= 1.0, "Retry-After: 1 was not honored"
    # In flight: never more than max_in_flight=3, and the faults did overlap (more than one at once).
    assert 2 <= proxy.max_in_flight <= 3, proxy.max_in_flight

    # The next run, with the server healthy again, retries exactly the failed queries and clears the failures.
    proxy.reset()
    with Store(tmp_path / "faulty.db") as st:
        second = score(queries, backend(), behavior, st, chunk_size=6, progress=False)
    got, failures = audit_store(tmp_path / "faulty.db")
    assert (second.skipped, second.scored, second.failed) == (8, 4, 0)
    assert not failures and sorted(got) == sorted(reference)
    assert_rows_match(got, reference)
    write_report_line(
        "faulty_server",
        {
            "queries": len(queries),
            "faulty_run_s": round(faulty_s, 1),
            "requests_per_fault": {k: len(v) for k, v in statuses.items()},
            "max_in_flight_seen": proxy.max_in_flight,
            "clean_max_in_flight_seen": clean_max_in_flight,
            "reasons": reasons,
        },
    )
    print(
        f"\nfaulty server: {first.scored} scored, {first.failed} recorded as failed in {faulty_s:.1f} s; "
        f"requests per faulted query { ({k: len(v) for k, v in statuses.items()}) }; max in flight "
        f"{proxy.max_in_flight} (limit 3)"
    )


def st_key(store):
    """The one run key in ``store`` (as a RunKey), for :meth:`Store.pending`."""
    from rarecast.store import RunKey

    return RunKey(*store.runs()[0].values())


def test_backoff_is_exponential_with_full_jitter_and_bounded() -> None:
    from rarecast.backends.http import RetryPolicy

    policy = RetryPolicy(max_attempts=6, base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(3)
    for attempt in range(6):
        cap = min(4.0, 0.5 * 2**attempt)
        draws = [policy.delay(attempt, None, rng) for _ in range(400)]
        assert 0 <= min(draws) and max(draws) <= cap
        assert max(draws) > 0.8 * cap and min(draws) < 0.2 * cap  # spread over the whole window: full jitter
    after = [policy.delay(0, 2.0, rng) for _ in range(200)]
    assert min(after) >= 2.0 and max(after) <= 2.5 and len(set(after)) > 100  # Retry-After plus jitter


# -- 4. API keys never written anywhere ------------------------------------------------------------------------


def test_api_key_never_reaches_store_exports_report_or_logs(proxy: ReliabilityProxy, tmp_path: Path) -> None:
    secret = "sk-rarecast-reliability-5f2d9c0e7b"
    queries, behavior = _write_inputs(tmp_path)
    env = {**os.environ, "OPENAI_API_KEY": secret}
    leak = json.dumps({"error": {"message": f"Incorrect API key provided: {secret}"}}).encode()
    # Servers that echo the key back in error bodies, once for a retried status and once for a final one.
    proxy.reset(
        Fault("Task 03:", 400, leak),
        Fault("Task 05:", 500, leak),
        Fault("Task 07:", 200, b"not json " + secret.encode()),
    )
    store = tmp_path / "run.db"
    model = f"openai:{proxy.url}/v1/smollm2"
    outputs = []
    run = subprocess.run(
        [*CLI, "score", str(queries), "--model", model, "--behavior", str(behavior), "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    outputs += [run.stdout, run.stderr]
    assert run.returncode == 0, run.stderr[-2000:]
    assert any(h.get("authorization") == f"Bearer {secret}" for _, _, _, h in proxy.log), "the key was not sent"
    _, failures = audit_store(store)
    assert {q for q, _ in failures} == {"q03", "q05", "q07"} and all("[redacted]" in r for _, r in failures)

    for args in (
        ["export", str(store), "-o", str(tmp_path / "scores.jsonl")],
        ["export", str(store), "-o", str(tmp_path / "scores.parquet")],
        ["forecast", str(store), "--json"],
        ["report", str(store), "-o", str(tmp_path / "report.html")],
    ):
        done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
        outputs += [done.stdout, done.stderr]
        assert done.returncode in (0, 2), done.stderr[-2000:]
    assert (tmp_path / "scores.jsonl").is_file()

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 5
    leaks = [str(p) for p in written if secret.encode() in p.read_bytes()]
    leaks += [f"output {i}" for i, text in enumerate(outputs) if secret in text]
    # The store through SQLite too (a WAL file folds in on close, so look at the rows as well as the bytes).
    con = sqlite3.connect(store)
    try:
        for table in ("results", "failures"):
            for row in con.execute(f"SELECT * FROM {table}"):
                if secret in json.dumps(row, default=str):
                    leaks.append(f"{table} row {row[0]}")
    finally:
        con.close()
    assert not leaks, f"the API key leaked into: {leaks}"
    write_report_line("api_key", {"files_searched": len(written), "outputs_searched": len(outputs)})
