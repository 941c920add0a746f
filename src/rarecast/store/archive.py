"""Query texts kept in the results store beside their scores, so a report can show what each query said.

The store's ``results`` rows carry query ids only; table ``query_texts`` maps each id to the query's JSONL
record (messages or prompt, plus metadata). Texts are adversarial by design: they are data, and whoever shows
them must escape them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from rarecast.queries import Query
from rarecast.queries.building import query_record

_SCHEMA = "CREATE TABLE IF NOT EXISTS query_texts (query_id TEXT PRIMARY KEY, query_json TEXT NOT NULL)"


def save_query_texts(store, queries: Sequence[Query]) -> None:
    """Record the texts of ``queries`` in ``store`` (a :class:`rarecast.store.Store`), in one transaction."""
    rows = [(q.id, json.dumps(query_record(q), ensure_ascii=False, sort_keys=True)) for q in queries]
    with store.conn:
        store.conn.execute(_SCHEMA)
        store.conn.executemany("INSERT OR REPLACE INTO query_texts VALUES (?, ?)", rows)


def load_query_texts(db_path: str | Path) -> dict[str, Query]:
    """The queries recorded in a store by id; empty when the store holds no texts."""
    conn = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT query_id, query_json FROM query_texts").fetchall()
    except sqlite3.OperationalError:  # a store written by `rarecast score` alone has no texts
        return {}
    finally:
        conn.close()
    return {qid: _query(json.loads(text)) for qid, text in rows}


def _query(record: dict) -> Query:
    record = dict(record)
    qid = record.pop("id")
    messages = record.pop("messages", None)
    prompt = record.pop("prompt", None)
    return Query(id=qid, messages=tuple(messages) if messages is not None else None, prompt=prompt, metadata=record)
