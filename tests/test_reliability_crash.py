"""Crash safety of `rarecast score` with the hf backend (issue 8, part 1).

A chain of real `rarecast score` subprocesses on one store, each killed with SIGKILL at a point drawn from a
seeded RNG, then finished by two processes scoring into the same store at once. After every kill the store
must pass ``PRAGMA integrity_check``, hold no duplicate row, have lost no row it held before, hold only values
equal to an uninterrupted run's, and record no failure; at the end it must equal the uninterrupted run.

The HTTP-backend chain (real llama.cpp server on loopback) is in ``test_reliability_http.py`` and uses the
helpers here. Kills are triggered by progress (the store reaching a drawn row count, then a drawn delay of up
to ``jitter_s``) or by time (a drawn delay after launch); progress triggers make sure kills land while
scoring and committing, not only while the model loads.

"Equal" has two meanings here. Rows a store already holds are read back, never recomputed: after every run
they must be the very same floats as before it. Rows scored by different runs are computed in other chunks,
so other batch shapes, than the uninterrupted run's: with the hf backend they must agree up to fp32 rounding
(tests/logp_helpers.py); the HTTP chain asks for equal floats (llama.cpp answers the same request alike).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_helpers import CLI
from logp_helpers import assert_logp_close

RESULT_COLUMNS = "query_id, model, revision, behavior_id, settings_hash, logp, successes, trials"


# -- helpers shared with test_reliability_http.py -------------------------------------------------------------


def count_rows(path: Path) -> int:
    """Rows in ``results`` (0 before the table exists); a plain read-only look, never creating anything."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet, or the writer holds the schema lock for a moment
        return 0
    finally:
        con.close()


def audit_store(path: Path) -> tuple[dict[str, tuple], list[tuple]]:
    """``({query_id: row}, failures)`` after checking integrity and that no key is stored twice."""
    con = sqlite3.connect(path, timeout=30)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"{path} is corrupt"
        rows = con.execute(f"SELECT {RESULT_COLUMNS} FROM results").fetchall()
        failures = con.execute("SELECT query_id, reason FROM failures").fetchall()
    finally:
        con.close()
    by_id = {r[0]: r for r in rows}
    assert len(by_id) == len(rows), f"{path}: a query is stored twice"
    return by_id, failures


def assert_rows_match(
    got: dict[str, tuple], reference: dict[str, tuple], *, n_tokens: int | None = None, n_targets: int = 1
) -> None:
    """Every row of ``got`` is in ``reference`` with the same key columns and the same value: equal floats when
    ``n_tokens`` is None, else equal up to fp32 rounding for a log p over ``n_targets`` targets of at most
    ``n_tokens`` tokens (see tests/logp_helpers.py)."""
    extra = set(got) - set(reference)
    assert not extra, f"rows for queries that the uninterrupted run does not have: {sorted(extra)}"
    for qid, row in got.items():
        ref = reference[qid]
        assert row[:5] == ref[:5], f"{qid}: key columns differ: {row[:5]} vs {ref[:5]}"
        assert row[6:] == ref[6:], f"{qid}: counts differ"
        if ref[5] is None or n_tokens is None:
            assert row[5] == ref[5], f"{qid}: log p {row[5]} vs {ref[5]}"
        else:
            assert row[5] is not None, f"{qid}: no log p"
            assert_logp_close(row[5], ref[5], n_tokens=n_tokens, n_targets=n_targets, what=f"{qid}: log p")


@dataclass
class ChainLog:
    """What a kill chain did: one entry per process it started."""

    kills: int = 0
    finished: int = 0
    rounds: int = 1
    events: list[dict] = field(default_factory=list)


def kill_chain(
    command: Callable[[Path], Sequence[str]],
    reference: dict[str, tuple],
    workdir: Path,
    *,
    kills: int,
    rng: random.Random,
    env: dict[str, str],
    n_tokens: int | None = None,
    n_targets: int = 1,
    time_window_s: tuple[float, float] | None = None,
    jitter_s: float = 0.3,
    run_limit_s: float = 180.0,
) -> tuple[Path, ChainLog]:
    """SIGKILL ``command(store)`` ``kills`` times, resuming each time; returns the last store (not complete).

    Each run is killed either when the store reaches a drawn row count (plus a drawn delay up to
    ``jitter_s``) or, when ``time_window_s`` is given, on every other run after a delay drawn from that
    window. A store that becomes complete is checked against ``reference`` and a fresh one started, so kills
    keep landing on runs that still have work to do. Everything is bounded: at most ``3 * kills + 3`` runs.
    Rows the store held before a run must come out of it bit for bit; new rows must match ``reference`` as
    :func:`assert_rows_match` with ``n_tokens`` and ``n_targets`` says.
    """
    n = len(reference)
    log = ChainLog()
    store = workdir / "chain-0.db"
    held: dict[str, tuple] = {}  # the store's rows before this run
    for run in range(3 * kills + 3):
        if log.kills >= kills:
            break
        before = count_rows(store)
        if before >= n:  # finished on its own: it must equal the reference; start a new round
            got, failures = audit_store(store)
            assert set(got) == set(reference) and not failures
            assert_rows_match(got, reference, n_tokens=n_tokens, n_targets=n_targets)
            store = workdir / f"chain-{log.rounds}.db"
            log.rounds += 1
            before, held = 0, {}
        by_time = time_window_s is not None and run % 2 == 1
        target = rng.randint(min(before + 1, n - 1), n - 1)
        delay = rng.uniform(*time_window_s) if by_time else rng.uniform(0.0, jitter_s)
        err = workdir / f"run-{run}.stderr"
        start = time.monotonic()
        with err.open("w") as fh:
            proc = subprocess.Popen(command(store), stdout=subprocess.DEVNULL, stderr=fh, env=env)
            try:
                _wait_for_trigger(proc, store, target, delay, by_time, start, run_limit_s)
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                rc = proc.wait(timeout=30)
        event = {
            "run": run,
            "trigger": "time" if by_time else f"rows>={target}",
            "delay_s": round(delay, 3),
            "at_s": round(time.monotonic() - start, 2),
            "rows_before": before,
            "rc": rc,
        }
        if rc == -signal.SIGKILL:
            log.kills += 1
        else:
            assert rc == 0, f"run {run} exited {rc}: {err.read_text()[-2000:]}"
            log.finished += 1
        got, failures = audit_store(store) if store.exists() else ({}, [])
        event["rows_after"] = len(got)
        log.events.append(event)
        assert len(got) >= before, f"run {run}: rows went from {before} to {len(got)} (work lost)"
        assert not failures, f"run {run}: failures recorded for a healthy backend: {failures}"
        changed = [qid for qid in held if got.get(qid) != held[qid]]
        assert not changed, f"run {run}: stored rows were not kept bit for bit: {changed}"
        assert_rows_match(got, reference, n_tokens=n_tokens, n_targets=n_targets)
        held = got
    assert log.kills >= kills, f"only {log.kills} kills in {len(log.events)} runs"
    return store, log


def _wait_for_trigger(proc, store: Path, target: int, delay: float, by_time: bool, start: float, limit: float):
    deadline = start + limit
    if by_time:
        while proc.poll() is None and time.monotonic() < start + delay:
            time.sleep(0.01)
        return
    while proc.poll() is None and time.monotonic() < deadline:
        if count_rows(store) >= target:
            time.sleep(delay)
            return
        time.sleep(0.02)
    assert time.monotonic() < deadline or proc.poll() is not None, f"run took more than {limit} s"


def run_concurrently(commands: Sequence[Sequence[str]], env: dict[str, str], workdir: Path, limit_s: float = 180):
    """Start every command at once; each must exit 0. Returns the wall time."""
    start = time.monotonic()
    procs = []
    for i, cmd in enumerate(commands):
        fh = (workdir / f"concurrent-{i}.stderr").open("w")
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, env=env), fh))
    try:
        for i, (proc, fh) in enumerate(procs):
            rc = proc.wait(timeout=limit_s)
            fh.close()
            assert rc == 0, (
                f"concurrent process {i} exited {rc}: {(workdir / f'concurrent-{i}.stderr').read_text()[-2000:]}"
            )
    finally:
        for proc, fh in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            fh.close()
    return time.monotonic() - start


def uninterrupted_run(command, workdir: Path, env: dict[str, str], n_queries: int) -> tuple[dict[str, tuple], float]:
    """Score a fresh store without interruption: the reference rows every kill chain must end equal to."""
    full = workdir / "uninterrupted.db"
    t0 = time.monotonic()
    done = subprocess.run(command(full), capture_output=True, text=True, env=env, timeout=300)
    seconds = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    reference, failures = audit_store(full)
    assert len(reference) == n_queries and not failures
    return reference, seconds


def write_report_line(name: str, record: dict) -> None:
    """Append the measured numbers of a reliability test to $RARECAST_RELIABILITY_LOG, when set (for docs)."""
    target = os.environ.get("RARECAST_RELIABILITY_LOG")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"test": name, **record}) + "\n")


# -- the hf backend -------------------------------------------------------------------------------------------

N_QUERIES = 16
# With the HTTP chain's KILLS, the 20 SIGKILLs at least.
KILLS = 10


def _hf_files(tmp_path: Path) -> tuple[Path, Path]:
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "".join(
            json.dumps({"id": f"q{i:02d}", "messages": [{"role": "user", "content": f"Task {i}: name a colour."}]})
            + "\n"
            for i in range(N_QUERIES)
        )
    )
    behavior = tmp_path / "behavior.yaml"
    behavior.write_text('name: starts-with-sure\nkind: specific_output\ntargets: ["Sure", "I cannot"]\n')
    return queries, behavior


@pytest.mark.slow
def test_hf_score_survives_sigkill_chain_and_concurrent_finish(tmp_path: Path) -> None:
    queries, behavior = _hf_files(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}

    def command(store: Path) -> list[str]:
        return [
            *CLI,
            "score",
            str(queries),
            "--model",
            "hf:smollm2",
            "--behavior",
            str(behavior),
            "--store",
            str(store),
            "--chunk-size",
            "2",
            "--no-progress",
        ]

    reference, reference_s = uninterrupted_run(command, tmp_path, env, N_QUERIES)

    rng = random.Random(8_001)
    # log p of two targets, "Sure" (1 token) and "I cannot" (2 tokens): scored in other chunks than the
    # reference's, so equal up to fp32 rounding.
    store, log = kill_chain(command, reference, tmp_path, kills=KILLS, rng=rng, env=env, n_tokens=2, n_targets=2)
    # The last store is finished by two processes scoring into it at the same time.
    wall = run_concurrently([command(store), command(store)], env, tmp_path)
    got, failures = audit_store(store)
    assert sorted(got) == sorted(reference) and not failures
    assert_rows_match(got, reference, n_tokens=2, n_targets=2)
    write_report_line(
        "hf_sigkill_chain",
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
        f"\nhf: {log.kills} SIGKILLs, {log.finished} runs finished, reference run {reference_s:.1f} s; "
        f"{[(e['trigger'], e['rows_before'], e['rows_after']) for e in log.events]}"
    )
