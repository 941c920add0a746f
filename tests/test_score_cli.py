"""`rarecast score` / `rarecast export` as subprocesses: bad input writes nothing, and a run killed with
SIGKILL keeps the rows it committed bit for bit and resumes to the rows of an uninterrupted run, whose values
the resumed rows equal up to fp32 rounding (real embedded model)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest
from cli_helpers import CLI
from logp_helpers import assert_logp_close

from rarecast.store import load_scores


def rarecast(*args, **kw):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, **kw)


def behavior_file(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text('name: starts-with-sure\nkind: specific_output\ntargets: ["Sure", "I cannot"]\n')
    return path


def test_bad_query_file_exits_2_and_writes_nothing(tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": "fine"\n')
    store = tmp_path / "run.db"
    done = rarecast("score", queries, "--behavior", behavior_file(tmp_path), "--store", store, "--no-progress")
    assert done.returncode == 2
    assert f"{queries}, row 2" in done.stderr and "bad JSON" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.yaml", "q.jsonl"]  # no store, no WAL files


def test_bad_behavior_exits_2(tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("hello\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: specific_output\ntargets: [Sure, Sure thing]\n")
    done = rarecast("score", queries, "--behavior", bad, "--store", tmp_path / "run.db", "--no-progress")
    assert done.returncode == 2 and "prefix-free" in done.stderr
    assert not (tmp_path / "run.db").exists()


def store_rows(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0
    finally:
        con.close()


def stored_logp(path) -> dict[str, float]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT query_id, logp FROM results").fetchall())
    finally:
        con.close()


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path):
    n = 12
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "".join(json.dumps({"id": f"q{i:02d}", "prompt": f"Question {i}: name a colour."}) + "\n" for i in range(n))
    )
    beh = behavior_file(tmp_path)
    args = ["--behavior", beh, "--chunk-size", "2", "--no-progress"]

    full = tmp_path / "full.db"
    assert rarecast("score", queries, "--store", full, *args).returncode == 0

    killed = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [*CLI, "score", str(queries), "--store", str(killed), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if killed.exists() and store_rows(killed) > 0:  # the first chunk is committed: kill mid-run
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL
    committed = stored_logp(killed)
    partial = len(committed)
    assert 0 < partial < n and partial % 2 == 0  # whole chunks only

    # The rerun scores the rest in other chunks (the default size), so other batch shapes than `full`'s.
    rerun = rarecast("score", queries, "--store", killed, "--behavior", beh, "--no-progress")
    assert rerun.returncode == 0

    a, prov_a = load_scores(full)
    b, prov_b = load_scores(killed)
    assert sorted(a.ids) == sorted(b.ids) == [f"q{i:02d}" for i in range(n)]
    by_id = dict(zip(b.ids, b.logp))
    # Rows committed before the kill are read back, not recomputed: the very same floats.
    assert {i: by_id[i] for i in committed} == committed
    # Every row, those scored after the resume included, equals the uninterrupted run's up to fp32 rounding
    # (tests/logp_helpers.py): log p of two targets, "Sure" (1 token) and "I cannot" (2 tokens).
    assert_logp_close([by_id[i] for i in a.ids], a.logp, n_tokens=2, n_targets=2)
    assert prov_b["n"] == n and prov_b["failures"] == 0
    assert (prov_a["model"], prov_a["revision"], prov_a["behavior_id"]) == (
        prov_b["model"],
        prov_b["revision"],
        prov_b["behavior_id"],
    )

    out = tmp_path / "scores.jsonl"
    assert rarecast("export", killed, "-o", out).returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["query_id"] for r in rows] == list(b.ids) and [r["logp"] for r in rows] == list(b.logp)
