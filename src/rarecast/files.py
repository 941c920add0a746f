"""The files users hand rarecast: tables (JSONL, CSV, Parquet, plain text) and YAML configuration.

Tables are read as numbered rows and written as whole files.
Rows are 1-based: the line number for JSONL, CSV and text files (a CSV header is line 1), the table row for
Parquet. Empty cells are dropped, so a reader sees a missing value as a missing key. Every problem raises
:class:`~rarecast.errors.InputError` naming the file and, where one is to blame, the row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rarecast.errors import InputError

Row = tuple[int, dict]
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def read_rows(path: Path, *, text_column: str | None = None) -> Iterator[Row]:
    """Rows of ``path`` by its extension; other extensions are plain text (one ``text_column`` value a line)
    when ``text_column`` is given and an error otherwise."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet_rows(path)
    if suffix not in JSONL_SUFFIXES + (".csv",) and text_column is None:
        raise InputError(f"unknown file type {suffix!r}; use .jsonl, .csv or .parquet", file=str(path))
    lines = utf8_lines(path)
    if suffix in JSONL_SUFFIXES:
        return _jsonl_rows(path, lines)
    if suffix == ".csv":
        return _csv_rows(path, lines)
    return ((i, {text_column: line}) for i, line in enumerate(lines, 1) if line.strip())


def columns_of(path: Path) -> list[str] | None:
    """Header columns of a CSV or Parquet file (None for row-wise formats), for checks before reading."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet_table(path).column_names
    if suffix == ".csv":
        first = next(iter(utf8_lines(path)), "")
        try:
            return next(csv.reader([first]), [])
        except csv.Error as exc:  # e.g. a carriage return inside an unquoted field
            raise InputError(f"bad CSV header: {exc}", file=str(path), row=1) from None
    return None


def utf8_lines(path: Path) -> list[str]:
    """Decode line by line so that a bad byte is reported with its line number."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is harmless; drop it
        raw = raw[3:]
    lines = []
    for i, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte {exc.start + 1} of the line)", file=str(path), row=i) from None
    return lines


def _jsonl_rows(path: Path, lines: list[str]) -> Iterator[Row]:
    first = True
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if first and line.lstrip("\ufeff \t").startswith("["):
            # many tools write one JSON array; read as JSON Lines it would fail as a bare "bad JSON"
            raise InputError(
                "JSON Lines files hold one JSON object per line; this looks like a JSON array "
                "(convert it with: jq -c '.[]' FILE.json > FILE.jsonl)",
                file=str(path),
                row=i,
            )
        first = False
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"bad JSON: {exc.msg} (column {exc.colno})", file=str(path), row=i) from None
        except RecursionError:
            # json's parser recurses once per nesting level; nothing a score or query needs is this deep
            raise InputError(
                "JSON nested too deeply to read (over about 1,000 levels of arrays or objects)", file=str(path), row=i
            ) from None
        if not isinstance(rec, dict):
            raise InputError("each line must be a JSON object", file=str(path), row=i)
        yield i, rec


def _csv_rows(path: Path, lines: list[str]) -> Iterator[Row]:
    reader = csv.DictReader(lines)
    try:
        if not reader.fieldnames:  # reads the header, which can itself be bad CSV
            raise InputError("empty CSV file (no header)", file=str(path), row=1)
        for rec in reader:
            if None in rec:
                raise InputError("more fields than the header has", file=str(path), row=reader.line_num)
            yield reader.line_num, {k: v for k, v in rec.items() if v not in (None, "")}
    except csv.Error as exc:
        # the reader counts the lines it has finished; the one it failed on is the next
        raise InputError(f"bad CSV: {exc}", file=str(path), row=reader.line_num + 1) from None


def _parquet_table(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
        raise InputError(f"cannot read Parquet: {type(exc).__name__}", file=str(path)) from None


def _parquet_rows(path: Path) -> Iterator[Row]:
    for i, rec in enumerate(_parquet_table(path).to_pylist(), start=1):
        yield i, {k: v for k, v in rec.items() if v is not None}


def write_table(path: Path, records: list[dict], metadata: dict[str, str] | None = None) -> None:
    """Write ``records`` as ``.jsonl`` or ``.parquet`` (by suffix), whole or not at all: a temporary file is
    renamed into place. ``metadata`` goes into the Parquet schema (JSONL rows carry their own fields)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".parquet"):
        raise InputError("writes .jsonl or .parquet", file=str(path))
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(records)
        pq.write_table(table.replace_schema_metadata(metadata or {}), tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file that must hold a mapping, read with ``yaml.safe_load``; errors give the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise InputError(f"bad YAML: {getattr(exc, 'problem', None) or exc}", file=str(path), row=row) from None
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a YAML mapping", file=str(path))
    return data


@dataclass(frozen=True)
class Config:
    """One configuration mapping (behavior, query spec, experiment, generation request) and where it came from.

    Every configuration file rarecast reads goes through :func:`read_config` and reports problems through
    :meth:`error`, so all of them reject unknown keys the same way and name the file and the key at fault.
    """

    values: dict[str, Any]
    file: str | None = None
    base: Path = field(default_factory=Path.cwd)  # the folder that relative paths in it are relative to

    def error(self, key: str, problem: str) -> InputError:
        return InputError(f"key '{key}': {problem}", file=self.file)

    def check_keys(self, known: Collection[str], required: Collection[str] = ()) -> None:
        """Reject a key outside ``known`` (a misspelt setting never passes silently) and a missing required one."""
        unknown = sorted(set(self.values) - set(known))
        if unknown:
            raise self.error(unknown[0], f"unknown key; known: {sorted(known)}")
        missing = [k for k in required if k not in self.values]
        if missing:
            raise self.error(missing[0], "is required")


def read_config(source: str | Path | Mapping[str, Any], what: str) -> Config:
    """A :class:`Config` from a YAML file (``what`` says what it should hold, for the error when it holds no
    mapping) or from a mapping already in memory, whose relative paths are relative to the working directory."""
    if isinstance(source, Mapping):
        return Config(dict(source))
    path = Path(source)
    return Config(read_yaml_mapping(path, what), str(path), path.resolve().parent)
