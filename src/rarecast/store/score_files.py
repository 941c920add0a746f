"""Reading score tables: JSONL, CSV, Parquet, or a results store, with errors that name the file and row.

A table holds one query per row with a ``logp`` column (natural-log probability), a ``p`` column, or
``successes`` and ``trials`` columns, the same in every row (each row is checked: a table that mixes exact
scores and counts is refused, naming the first row that differs); an ``id`` or ``query_id`` column is kept
when present. Provenance fields
written by ``rarecast export`` (model, revision, behavior, decoding, rarecast_version) are carried along.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rarecast.errors import ForecastError, InputError
from rarecast.files import JSONL_SUFFIXES, read_rows
from rarecast.scores import Scores
from rarecast.store import load_scores

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
        return load_scores(path, behavior=behavior, model=model)
    if suffix not in JSONL_SUFFIXES + (".csv", ".parquet"):
        raise InputError(
            f"unknown score file type {suffix!r}; use .jsonl, .csv, .parquet or a .db store", file=str(path)
        )
    return _to_scores(path, read_rows(path))


def _to_scores(path: Path, rows: Iterator[tuple[int, dict[str, Any]]]) -> tuple[Scores, dict]:
    columns: tuple[str, ...] | None = None
    values: dict[str, list[float]] = {}
    ids: list[str] = []
    line_of: list[int] = []
    provenance: dict = {}
    first_line = 0
    for line, row in rows:
        if columns is None:
            columns, first_line = _kind_of(path, line, row), line
            values = {c: [] for c in columns}
            provenance = {k: row[k] for k in PROVENANCE_FIELDS if k in row}
        else:
            _check_kind(path, line, row, columns, first_line)
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
        at = line_of[exc.index] if exc.index is not None else None
        raise InputError(exc.problem, file=str(path), row=at) from None
    return scores, provenance


def _kind_of(path: Path, line: int, row: dict) -> tuple[str, ...]:
    """The columns the first row holds its score in; a row with both an exact score and counts is refused."""
    _one_kind(path, line, row)
    for kind in _KINDS:
        if all(c in row for c in kind):
            return kind
    raise InputError(
        f"needs a 'logp', 'p', or 'successes' and 'trials' column; found {sorted(row)[:8]}", file=str(path), row=line
    )


def _one_kind(path: Path, line: int, row: dict) -> None:
    exact = [c for c in ("logp", "p") if c in row]
    counts = [c for c in ("successes", "trials") if c in row]
    if exact and counts:
        raise InputError(
            f"holds both an exact score ({', '.join(exact)}) and counts ({', '.join(counts)}); "
            "a row holds one kind of score",
            file=str(path),
            row=line,
        )


def _check_kind(path: Path, line: int, row: dict, columns: tuple[str, ...], first_line: int) -> None:
    """Every row holds its score in the first row's columns: a table mixing exact log p and counts (or log p
    and p) is refused at the first row that differs, rather than read by the first row's kind."""
    _one_kind(path, line, row)
    if all(c in row for c in columns):
        return
    found = next((kind for kind in _KINDS if all(c in row for c in kind)), None)
    if found is not None:
        raise InputError(
            f"holds {_describe(found)} but row {first_line} holds {_describe(columns)}; "
            "a score table holds one kind of score",
            file=str(path),
            row=line,
        )


def _describe(kind: tuple[str, ...]) -> str:
    exact: dict[tuple[str, ...], str] = {("logp",): "an exact log p ('logp')", ("p",): "an exact p ('p')"}
    return exact.get(kind, "counts ('successes', 'trials')")


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
