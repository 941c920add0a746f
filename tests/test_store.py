"""The SQLite results store: keys, resumption, atomic chunks, failures, load_scores and export."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pyarrow.parquet as pq
import pytest

from rarecast.elicitation.behaviors import Outcome, Sampled, SpecificOutput, run_key
from rarecast.errors import InputError
from rarecast.store import Store, load_scores


class Described:
    """Provenance fields of a backend (the store reads only these; nothing is scored here)."""

    def __init__(self, model_id="hf:test-model", revision="rev-1"):
        self.model_id, self.revision = model_id, revision

    def describe(self):
        return {"backend": "hf", "dtype": "fp32"}


def test_rows_keyed_by_run_and_pending(tmp_path):
    beh = SpecificOutput(["Sure"], name="sure")
    key = run_key(Described(), beh)
    with Store(tmp_path / "run.db") as st:
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        st.write(key, [("a", Outcome(logp=-1.5)), ("b", Outcome(logp=-math.inf))])
        assert st.pending(["a", "b", "c"], key) == ["c"]
        other = run_key(Described(revision="rev-2"), beh)
        assert st.pending(["a", "b", "c"], other) == ["a", "b", "c"]
        hotter = run_key(Described(), SpecificOutput(["Sure"], temperature=0.5, name="sure"))
        assert hotter.behavior_id != key.behavior_id and st.pending(["a"], hotter) == ["a"]
    scores, prov = load_scores(tmp_path / "run.db")
    assert scores.ids == ("a", "b") and scores.logp[0] == -1.5 and scores.logp[1] == -np.inf
    assert prov["model"] == "hf:test-model" and prov["behavior"] == "sure" and prov["kind"] == "exact"
    assert prov["decoding"] == {"temperature": 1.0, "backend": {"backend": "hf", "dtype": "fp32"}}
    assert prov["behavior_spec"] == beh.settings() and prov["rarecast_version"]


def test_failures_are_recorded_not_scored_and_retried(tmp_path):
    key = run_key(Described(), SpecificOutput(["x"], name="x"))
    with Store(tmp_path / "run.db") as st:
        st.write(key, [("a", Outcome(logp=-2.0))], failures=[("b", "prompt too long")])
        assert st.pending(["a", "b"], key) == ["b"]  # failed queries are tried again
        assert st.runs()[0].failures == 1
        st.write(key, [("b", Outcome(logp=-3.0))])
        assert st.runs()[0].failures == 0
        assert st.conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 0


def test_a_chunk_is_written_whole_or_not_at_all(tmp_path):
    key = run_key(Described(), SpecificOutput(["x"], name="x"))
    with Store(tmp_path / "run.db") as st:
        st.write(key, [("a", Outcome(logp=-1.0))])
        with pytest.raises(ValueError):
            st.write(key, [("b", Outcome(logp=-1.0)), ("c", Outcome(logp=float("nan")))])
        with pytest.raises(sqlite3.IntegrityError):  # neither logp nor counts: rejected by the schema
            st.write(key, [("d", Outcome(logp=-1.0)), ("e", Outcome())])
        assert st.pending(["a", "b", "c", "d", "e"], key) == ["b", "c", "d", "e"]


def test_several_runs_need_a_choice(tmp_path):
    db = tmp_path / "run.db"
    exact = SpecificOutput(["x"], name="exact-one")
    sampled = Sampled(k=10, grader={"kind": "regex", "pattern": "x"}, name="sampled-one")
    with Store(db) as st:
        st.write(run_key(Described(), exact), [("a", Outcome(logp=-1.0)), ("b", Outcome(logp=-2.0))])
        st.write(run_key(Described(), sampled), [("a", Outcome(successes=3, trials=10))])
    with pytest.raises(InputError, match="several runs") as err:
        load_scores(db)
    assert "exact-one" in str(err.value) and "sampled-one" in str(err.value) and err.value.file == str(db)
    counts, prov = load_scores(db, behavior="sampled-one")
    assert counts.kind == "counts" and list(counts.successes) == [3] and list(counts.trials) == [10]
    by_id, _ = load_scores(db, behavior=exact.behavior_id, model="hf:test-model")
    assert by_id.ids == ("a", "b")
    with pytest.raises(InputError, match="no stored results"):
        load_scores(db, model="hf:other")
    with pytest.raises(InputError, match="no such store"):
        load_scores(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_export_jsonl_and_parquet(tmp_path):
    db = tmp_path / "run.db"
    beh = SpecificOutput(["x"], name="x")
    with Store(db) as st:
        st.write(run_key(Described(), beh), [("a", Outcome(logp=-1.25)), ("b", Outcome(logp=-math.inf))])
        assert st.export(tmp_path / "s.jsonl") == 2
        assert st.export(tmp_path / "s.parquet") == 2
        with pytest.raises(InputError, match="jsonl or .parquet"):
            st.export(tmp_path / "s.csv")
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["query_id"] for r in rows] == ["a", "b"] and rows[0]["logp"] == -1.25 and rows[1]["logp"] == -math.inf
    assert {"model", "revision", "behavior", "behavior_id", "decoding", "rarecast_version", "created_at"} <= set(
        rows[0]
    )
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.column("logp").to_pylist() == [-1.25, -math.inf]
    assert table.schema.metadata[b"model"] == b"hf:test-model"
