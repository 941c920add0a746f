"""The results store: one SQLite file per run (or several runs), resumable, with provenance on every row.

Table ``results`` holds one row per (query_id, model, revision, behavior_id, settings_hash), where
``settings_hash`` hashes the decoding settings (temperature, top_p, ... and the backend's numeric precision).
A row holds either ``logp`` (exact methods) or ``successes`` and ``trials`` (sampling), plus the behavior's
name and canonical JSON, the decoding settings JSON, the rarecast version and a UTC timestamp.

Table ``failures`` records queries that could not be scored and why; a failure is never stored as a
probability, and a later successful rerun removes it.

Every chunk of results is written in one transaction, so a killed run leaves only whole chunks; the database
runs in WAL mode so a reader (``load_scores``, ``export``) never blocks a running ``rarecast score``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rarecast.errors import InputError
from rarecast.files import write_table
from rarecast.provenance import rarecast_version, utc_now
from rarecast.scores import Scores

KEY_COLUMNS = ("model", "revision", "behavior_id", "settings_hash")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    query_id TEXT NOT NULL,
    model TEXT NOT NULL,
    revision TEXT NOT NULL,
    behavior_id TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    behavior_name TEXT NOT NULL,
    behavior_json TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    rarecast_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    logp REAL,
    successes INTEGER,
    trials INTEGER,
    details_json TEXT,
    PRIMARY KEY (query_id, model, revision, behavior_id, settings_hash),
    CHECK ((logp IS NULL) <> (successes IS NULL)),
    CHECK ((successes IS NULL) = (trials IS NULL))
);
CREATE TABLE IF NOT EXISTS failures (
    query_id TEXT NOT NULL,
    model TEXT NOT NULL,
    revision TEXT NOT NULL,
    behavior_id TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (query_id, model, revision, behavior_id, settings_hash)
);
"""


@dataclass(frozen=True)
class RunKey:
    """Identifies one run: which model (and revision), which behavior, which decoding settings.

    ``behavior_json`` and ``settings_json`` are the provenance written with each row (not part of equality).
    """

    model: str
    revision: str
    behavior_id: str
    settings_hash: str
    behavior_name: str = ""
    behavior_json: str = "{}"
    settings_json: str = "{}"

    def values(self) -> tuple[str, str, str, str]:
        """The four key columns, in :data:`KEY_COLUMNS` order."""
        return (self.model, self.revision, self.behavior_id, self.settings_hash)


@dataclass(frozen=True)
class Run:
    """One stored run (rows sharing a :class:`RunKey`), as :meth:`Store.runs` describes it.

    ``kind`` is ``exact`` (every row holds a log p) or ``counts``; ``n`` counts its stored rows and
    ``failures`` its queries that failed and were not scored since.
    """

    model: str
    revision: str
    behavior_id: str
    settings_hash: str
    behavior: str
    behavior_spec: dict[str, Any]
    decoding: dict[str, Any]
    n: int
    created_first: str
    created_last: str
    rarecast_version: str
    kind: str
    failures: int

    def values(self) -> tuple[str, str, str, str]:
        """The four key columns, in :data:`KEY_COLUMNS` order."""
        return (self.model, self.revision, self.behavior_id, self.settings_hash)

    def provenance(self) -> dict[str, Any]:
        """The run as plain data, for forecast.json and the report."""
        return asdict(self)


class StoredRow(NamedTuple):
    """One stored result."""

    query_id: str
    logp: float | None
    successes: int | None
    trials: int | None
    created_at: str
    rarecast_version: str


class Store:
    """A results store in the SQLite file ``path`` (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        check_store_file(self.path)  # never add tables to a file that is not a rarecast store
        self.conn = sqlite3.connect(self.path, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed chunk survives a killed process; only an OS crash can lose the last one.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        with self.conn:
            self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection (a checkpoint folds the WAL back into the main file)."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------------

    def pending(self, query_ids: Sequence[str], key: RunKey) -> list[str]:
        """The ids among ``query_ids`` (order kept) that have no result under ``key`` yet.

        Failed queries are pending: a rerun tries them again.
        """
        done = {
            r[0]
            for r in self.conn.execute(
                "SELECT query_id FROM results WHERE model=? AND revision=? AND behavior_id=? AND settings_hash=?",
                key.values(),
            )
        }
        return [q for q in query_ids if q not in done]

    def write(self, key: RunKey, outcomes: Iterable[tuple[str, Any]], failures: Iterable[tuple[str, str]] = ()) -> None:
        """Store one chunk atomically: results (``(query_id, Outcome)``) and failures (``(query_id, reason)``).

        Either the whole chunk lands or none of it does. A result replaces an earlier failure of that query.
        """
        now, version = utc_now(), rarecast_version()
        rows = [self._result_row(key, qid, o, now, version) for qid, o in outcomes]
        fails = [(qid, *key.values(), str(reason), now) for qid, reason in failures]
        with self.conn:  # one transaction
            self.conn.executemany("INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.conn.executemany(
                "DELETE FROM failures WHERE query_id=? AND model=? AND revision=? AND behavior_id=? "
                "AND settings_hash=?",
                [(r[0], *key.values()) for r in rows],
            )
            self.conn.executemany("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?)", fails)

    @staticmethod
    def _result_row(key: RunKey, qid: str, outcome, now: str, version: str) -> tuple:
        logp = outcome.logp
        if logp is not None and (math.isnan(logp) or logp > 0):
            raise ValueError(f"query {qid}: log p {logp} is not a valid log-probability")  # a bug, not input
        details = json.dumps(outcome.details, sort_keys=True) if outcome.details else None
        return (
            qid,
            *key.values(),
            key.behavior_name,
            key.behavior_json,
            key.settings_json,
            version,
            now,
            logp,
            outcome.successes,
            outcome.trials,
            details,
        )

    # -- reading ---------------------------------------------------------------------------------------------

    def runs(self) -> list[Run]:
        """Every stored (model, revision, behavior, settings) combination, in the order it was first written."""
        cur = self.conn.execute(
            "SELECT model, revision, behavior_id, settings_hash, MIN(behavior_name), MIN(behavior_json), "
            "MIN(settings_json), COUNT(*), MIN(created_at), MAX(created_at), "
            "GROUP_CONCAT(DISTINCT rarecast_version), SUM(logp IS NOT NULL) "
            "FROM results GROUP BY model, revision, behavior_id, settings_hash ORDER BY MIN(rowid)"
        )
        out = []
        for r in cur.fetchall():
            n_fail = self.conn.execute(
                "SELECT COUNT(*) FROM failures WHERE model=? AND revision=? AND behavior_id=? AND settings_hash=?",
                r[:4],
            ).fetchone()[0]
            spec, decoding = json.loads(r[5]), json.loads(r[6])
            kind = "exact" if r[11] == r[7] else "counts"
            out.append(Run(r[0], r[1], r[2], r[3], r[4], spec, decoding, r[7], r[8], r[9], r[10], kind, n_fail))
        return out

    def run(self, key: RunKey) -> Run | None:
        """The run stored under ``key`` (None before its first row)."""
        return next((r for r in self.runs() if r.values() == key.values()), None)

    def select_run(self, behavior: str | None = None, model: str | None = None) -> Run:
        """The one run matching ``behavior`` (name or id) and ``model``; InputError if none or several."""
        runs = [
            r
            for r in self.runs()
            if (behavior is None or behavior in (r.behavior, r.behavior_id)) and (model is None or model == r.model)
        ]
        if len(runs) == 1:
            return runs[0]
        if not runs:
            raise InputError(f"no stored results for behavior={behavior!r}, model={model!r}", file=str(self.path))
        listing = "; ".join(
            f"behavior {r.behavior!r} (id {r.behavior_id}) on {r.model} "
            f"[{r.revision[:24]}], settings {r.settings_hash}: {r.n} rows"
            for r in runs
        )
        raise InputError(
            f"the store holds several runs; choose one with behavior= / model= ({listing})", file=str(self.path)
        )

    def rows(self, run: Run | RunKey) -> list[StoredRow]:
        """The stored results of one run, in scoring order."""
        cur = self.conn.execute(
            "SELECT query_id, logp, successes, trials, created_at, rarecast_version FROM results "
            "WHERE model=? AND revision=? AND behavior_id=? AND settings_hash=? ORDER BY rowid",
            run.values(),
        )
        return [StoredRow(*r) for r in cur.fetchall()]

    def scores(self, run: Run, query_ids: Sequence[str] | None = None) -> tuple[Scores, dict[str, Any]]:
        """Scores of ``run`` (with query ids) and its provenance: every stored row, or only the rows of
        ``query_ids``, in that order (a store can hold rows of queries an experiment no longer has)."""
        rows = self.rows(run)
        if query_ids is not None:
            by_id = {r.query_id: r for r in rows}
            rows = [by_id[i] for i in query_ids if i in by_id]
        if not rows:
            raise InputError("no query could be scored; see the failures table in the store", file=str(self.path))
        ids = [r.query_id for r in rows]
        if run.kind == "exact":
            scores = Scores.from_logp(np.array([r.logp for r in rows], dtype=float), ids=ids)
        else:
            successes = np.array([r.successes for r in rows], dtype=float)
            scores = Scores.from_counts(successes, np.array([r.trials for r in rows], dtype=float), ids=ids)
        return scores, {**run.provenance(), "n": len(rows), "source": str(self.path)}

    def export(self, path: str | Path, behavior: str | None = None, model: str | None = None) -> int:
        """Write one run to ``.jsonl`` or ``.parquet``: one row per query with its provenance.

        Returns the number of rows. A log p of exactly -inf is written as JSON ``-Infinity`` (what Python's
        ``json`` reads back); Parquet keeps it as a float -inf.
        """
        run = self.select_run(behavior, model)
        records = [self._export_record(run, r) for r in self.rows(run)]
        first = records[0] if records else {"model": "", "behavior": ""}
        write_table(
            Path(path),
            records,
            {"rarecast_version": rarecast_version(), "model": first["model"], "behavior": first["behavior"]},
        )
        return len(records)

    @staticmethod
    def _export_record(run: Run, row: StoredRow) -> dict[str, Any]:
        values = {"logp": row.logp} if run.kind == "exact" else {"successes": row.successes, "trials": row.trials}
        return {
            "query_id": row.query_id,
            **values,
            "model": run.model,
            "revision": run.revision,
            "behavior": run.behavior,
            "behavior_id": run.behavior_id,
            "decoding": json.dumps(run.decoding, sort_keys=True),
            "rarecast_version": row.rarecast_version,
            "created_at": row.created_at,
        }


def check_store_file(path: str | Path, *, must_exist: bool = False) -> None:
    """Raise InputError unless ``path`` is missing (and ``must_exist`` is false), empty, or a rarecast store.

    Looks through a read-only connection, so a file that is not a store (a foreign SQLite database, garbage, a
    folder) is reported and left exactly as it was, before any model is loaded or any table created.
    """
    p = Path(path)
    if not p.exists():
        if must_exist:
            raise InputError("no such store", file=str(p))
        return
    if not p.is_file():
        raise InputError("not a rarecast store (not a regular file)", file=str(p))
    if p.stat().st_size == 0:
        if must_exist:
            raise InputError("not a rarecast store (the file is empty)", file=str(p))
        return
    with open(p, "rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            raise InputError("not a rarecast store: not an SQLite database", file=str(p))
    sidecars = [p.with_name(p.name + s) for s in ("-wal", "-shm")]
    existed = [s.exists() for s in sidecars]
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        # A read-only look at a damaged WAL-mode file can leave empty -wal/-shm files; remove only those.
        for sidecar, was_there in zip(sidecars, existed):
            if not was_there and sidecar.exists() and (sidecar.name.endswith("-shm") or sidecar.stat().st_size == 0):
                sidecar.unlink()
        raise InputError(f"not a rarecast store: {exc}", file=str(p)) from None
    if not tables and not must_exist:
        return  # a fresh SQLite file (another process may be creating this store right now)
    if "results" not in tables or (must_exist and "failures" not in tables):
        found = ", ".join(sorted(tables)[:8]) or "none"
        raise InputError(f"a SQLite database but not a rarecast store (tables: {found}); left untouched", file=str(p))


def open_existing(db_path: str | Path) -> Store:
    """Open a store that must already exist (reading never creates a file or adds a table)."""
    p = Path(db_path)
    check_store_file(p, must_exist=True)
    try:
        return Store(p)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"not a rarecast store: {exc}", file=str(p)) from None


def load_scores(db_path: str | Path, behavior: str | None = None, model: str | None = None) -> tuple[Scores, dict]:
    """Scores (with query ids) of one run in a store, and its provenance.

    ``behavior`` selects by behavior name or behavior id, ``model`` by model string (e.g. ``hf:smollm2``).
    Raises :class:`~rarecast.errors.InputError` when the file is missing or not a store, when nothing matches,
    or when several (model, behavior, settings) runs match and none was chosen. The provenance dict holds
    model, revision, behavior, behavior_id, behavior_spec, decoding, kind, n, failures, rarecast_version,
    created_first, created_last and source.
    """
    with open_existing(db_path) as store:
        return store.scores(store.select_run(behavior, model))
