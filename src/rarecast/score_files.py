"""Reading score tables: JSONL, CSV, Parquet, or a results store, with errors that name the file and row.

A table holds one query per row with a ``logp`` column (natural-log probability), a ``p`` column, or
``successes`` and ``trials`` columns; an ``id`` or ``query_id`` column is kept when present. Provenance fields
written by ``rarecast export`` (model, revision, behavior, decoding, rarecast_version) are carried along.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator

from rarecast.errors import ForecastError, InputError
from rarecast.scores import Scores

#: columns that describe where scores came from; the first row's values are reported as the provenance
PROVENANCE_FIELDS = ("model", "revision", "behavior", "behavior_id", "decoding", "rarecast_version")
_KINDS = (("logp",), ("p",), ("successes", "trials"))


def read_scores(path: str | Path, *, model: str | None = None, behavior: str | None = None) -> tuple[Scores, dict]:
    """Load a score table; returns the validated :class:`Scores` and a provenance dict.

    ``.db`` files are results stores (``model`` and ``behavior`` pick one run when it holds several).
    Any problem raises :class:`~rarecast.InputError` naming the file and, where one is to blame, the row.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    suffix = path.suffix.lower()
    if suffix == ".db":
        from rarecast.store import load_scores

        return load_scores(path, behavior=behavior, model=model)
    readers = {".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows, ".json": _jsonl_rows, ".csv": _csv_rows,
               ".parquet": _parquet_rows}
    if suffix not in readers:
        raise InputError(f"unknown score file type {suffix!r}; use .jsonl, .csv, .parquet or a .db store",
                         file=str(path))
    return _to_scores(path, readers[suffix](path))


def _to_scores(path: Path, rows: Iterator[tuple[int, dict[str, Any]]]) -> tuple[Scores, dict]:
    columns: tuple[str, ...] | None = None
    values: dict[str, list[float]] = {}
    ids: list[str] = []
    line_of: list[int] = []
    provenance: dict = {}
    for line, row in rows:
        if columns is None:
            columns = _kind_of(path, line, row)
            values = {c: [] for c in columns}
            provenance = {k: row[k] for k in PROVENANCE_FIELDS if k in row}
        for c in columns:
            values[c].append(_number(path, line, row, c))
        ids.append(str(row.get("id", row.get("query_id", len(ids) + 1))))
        line_of.append(line)
    if columns is None:
        raise InputError("holds no scores", file=str(path))
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for i, qid in enumerate(ids):
            if qid in seen:
                raise InputError(f"duplicate query id {qid!r}", file=str(path), row=line_of[i])
            seen.add(qid)
    try:
        if columns == ("logp",):
            scores = Scores.from_logp(values["logp"], ids=ids)
        elif columns == ("p",):
            scores = Scores.from_p(values["p"], ids=ids)
        else:
            scores = Scores.from_counts(values["successes"], values["trials"], ids=ids)
    except ForecastError as exc:
        row = line_of[exc.index] if exc.index is not None else None
        raise InputError(exc.problem, file=str(path), row=row) from None
    return scores, provenance


def _kind_of(path: Path, line: int, row: dict) -> tuple[str, ...]:
    for kind in _KINDS:
        if all(c in row for c in kind):
            return kind
    raise InputError(f"needs a 'logp', 'p', or 'successes' and 'trials' column; found {sorted(row)[:8]}",
                     file=str(path), row=line)


def _number(path: Path, line: int, row: dict, column: str) -> float:
    value = row.get(column)
    if isinstance(value, bool) or value is None or value == "":
        raise InputError(f"'{column}' is missing", file=str(path), row=line)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"'{column}' is {str(value)[:40]!r}, not a number", file=str(path), row=line) from None
    if column == "logp" and out == -math.inf:
        return out  # p = 0 exactly is a valid score
    if not math.isfinite(out):
        raise InputError(f"'{column}' is {'NaN' if math.isnan(out) else 'infinite'}", file=str(path), row=line)
    return out


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as fh:
        for line, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputError("is not UTF-8 text", file=str(path), row=line) from None
            if not text:
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"bad JSON ({exc.msg})", file=str(path), row=line) from None
            if not isinstance(row, dict):
                raise InputError("each line must be a JSON object", file=str(path), row=line)
            yield line, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.DictReader(fh), 2):  # line 1 is the header
                if None in row:
                    raise InputError("has more fields than the header", file=str(path), row=line)
                yield line, row
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", file=str(path)) from None
    except csv.Error as exc:
        raise InputError(f"bad CSV ({exc})", file=str(path)) from None


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})", file=str(path)) from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield i, row
