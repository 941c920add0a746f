"""Queries: one chat (a list of messages) or one plain-text prompt each, with a stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecast.errors import InputError
from rarecast.files import columns_of, read_rows


@dataclass(frozen=True)
class Query:
    """One evaluation query. Exactly one of ``messages`` (chat) or ``prompt`` (plain text) is set."""

    id: str
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


def stable_id(messages=None, prompt=None) -> str:
    """A short content hash, so the same query gets the same id in every run."""
    payload = json.dumps({"messages": messages, "prompt": prompt}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# Loading query files. Rows are 1-based: the line number for JSONL, CSV and text files (a CSV header is
# line 1), the table row for Parquet.

ROLES = ("system", "user", "assistant")


def load_queries(path) -> list[Query]:
    """Read queries from a ``.jsonl``, ``.csv``, ``.parquet`` or ``.txt`` file (chosen by extension).

    * JSONL (also ``.ndjson`` and ``.json``): one object a line, ``{"id": ..., "messages": [{"role": ...,
      "content": ...}, ...]}``, ``{"id": ..., "prompt": "..."}`` or ``{"id": ..., "user": "...", "system":
      "..."}`` (``system`` optional); ``id`` is optional (a stable content hash is used), other keys are kept
      as metadata. Blank lines are skipped.
    * CSV / Parquet: a ``prompt`` column, or ``user`` with an optional ``system`` column; optional ``id``
      (Parquet may also hold a ``messages`` column of role/content records).
    * Text (any other extension): one prompt per non-blank line.

    Raises :class:`~rarecast.errors.InputError` naming the file and row for bad JSON, missing or conflicting
    fields, duplicate ids, text that is not UTF-8, a JSON array instead of JSON Lines, or a file with no
    queries.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", file=str(p))
    columns = columns_of(p)
    if columns is not None:
        _check_columns(columns, str(p))
    rows = read_rows(p, text_column="prompt")
    queries = _unique([(row, _query_from_record(rec, str(p), row)) for row, rec in rows], str(p))
    if not queries:
        raise InputError("no queries in the file", file=str(p))
    return queries


def _check_columns(columns, file: str) -> None:
    cols = set(columns)
    if not cols & {"prompt", "user", "messages"}:
        raise InputError(
            f"needs a 'prompt' column, or 'user' (with optional 'system'); found {sorted(cols)}", file=file, row=1
        )


def _query_from_record(rec: dict, file: str, row: int) -> Query:
    """One record (JSON object or table row) -> Query; the table form user/system becomes messages."""
    rec = dict(rec)
    if "user" in rec and "messages" not in rec and "prompt" not in rec:
        msgs = [{"role": "system", "content": rec.pop("system")}] if "system" in rec else []
        msgs.append({"role": "user", "content": rec.pop("user")})
        rec["messages"] = msgs
    has_messages, has_prompt = "messages" in rec, "prompt" in rec
    if has_messages == has_prompt:
        problem = "both 'messages' and 'prompt'" if has_prompt else "neither 'messages' nor 'prompt'"
        raise InputError(
            f"a query needs exactly one of 'messages' or 'prompt'; this one has {problem}", file=file, row=row
        )
    messages = _check_messages(rec.pop("messages"), file, row) if has_messages else None
    prompt = rec.pop("prompt") if has_prompt else None
    if has_prompt and not isinstance(prompt, str):
        raise InputError("'prompt' must be a string", file=file, row=row)
    qid = rec.pop("id", None)
    if qid is None:
        qid = stable_id(messages=[dict(m) for m in messages] if messages else None, prompt=prompt)
    elif not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise InputError("'id' must be a non-empty string or integer", file=file, row=row)
    return Query(id=str(qid), messages=messages, prompt=prompt, metadata=rec)


def _check_messages(messages, file: str, row: int) -> tuple[dict[str, str], ...]:
    if not isinstance(messages, list) or not messages:
        raise InputError("'messages' must be a non-empty list", file=file, row=row)
    out = []
    for j, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise InputError(
                f"message {j} must be {{'role': one of {list(ROLES)}, 'content': a string}}", file=file, row=row
            )
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def _unique(pairs: list[tuple[int, Query]], file: str) -> list[Query]:
    first: dict[str, int] = {}
    for row, q in pairs:
        if q.id in first:
            raise InputError(f"duplicate query id {q.id!r} (first seen on row {first[q.id]})", file=file, row=row)
        first[q.id] = row
    return [q for _, q in pairs]
