"""Importers from the tools people already evaluate with: inspect_ai, garak and lm-evaluation-harness.

Every importer turns a tool's log into one or more :class:`ImportedRun` (one model, one behavior, one query
per row) and :func:`write_runs` writes each as the canonical score table that ``rarecast export`` writes, so
``rarecast forecast``, ``backtest`` and ``report`` read it unchanged. The importers read the tools' files and
never import garak or lm-eval; the inspect importer uses inspect's own log reader (the ``inspect`` extra).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarecast.elicitation.behaviors import settings_hash
from rarecast.errors import InputError
from rarecast.files import write_table
from rarecast.provenance import rarecast_version, utc_now


@dataclass(frozen=True)
class ImportedRow:
    """One query's score: ``logp`` (exact) or ``successes`` of ``trials`` (sampled)."""

    query_id: str
    logp: float | None = None
    successes: int | None = None
    trials: int | None = None


@dataclass
class ImportedRun:
    """One model x behavior from a foreign log, with the provenance the canonical table carries.

    ``label`` names the run in messages and in output file names when a log holds several runs;
    ``behavior_spec`` is what was measured (hashed into ``behavior_id``); ``source`` names the tool and file.
    """

    label: str
    model: str
    revision: str
    behavior: str
    behavior_spec: dict[str, Any]
    decoding: dict[str, Any]
    source: str
    rows: list[ImportedRow] = field(default_factory=list)

    @property
    def behavior_id(self) -> str:
        """Stable hash of ``behavior_spec``, as behaviors scored by rarecast itself get."""
        return settings_hash(self.behavior_spec)


def exact_row(query_id: str, logp: float, *, file: str, where: str) -> ImportedRow:
    """A validated exact row; a log p that is NaN or above 0 is an error naming ``file`` and ``where``."""
    value = float(logp)
    if math.isnan(value) or value > 0:
        raise InputError(f"{where}: log-probability {value} is not <= 0", file=file)
    return ImportedRow(query_id, logp=value)


def counts_row(query_id: str, successes: int, trials: int, *, file: str, where: str) -> ImportedRow:
    """A validated counts row; ``0 <= successes <= trials`` and ``trials >= 1``."""
    if not 0 <= successes <= trials or trials < 1:
        raise InputError(f"{where}: {successes} successes of {trials} trials", file=file)
    return ImportedRow(query_id, successes=int(successes), trials=int(trials))


def canonical_records(run: ImportedRun) -> list[dict[str, Any]]:
    """The rows of ``run`` in the column layout of ``rarecast export`` (plus ``source``)."""
    created = utc_now()
    common = {
        "model": run.model,
        "revision": run.revision,
        "behavior": run.behavior,
        "behavior_id": run.behavior_id,
        "decoding": json.dumps(run.decoding, sort_keys=True),
        "rarecast_version": rarecast_version(),
        "created_at": created,
        "source": run.source,
    }
    out = []
    for row in run.rows:
        values = {"logp": row.logp} if row.logp is not None else {"successes": row.successes, "trials": row.trials}
        out.append({"query_id": row.query_id, **values, **common})
    return out


def output_paths(runs: Sequence[ImportedRun], out: Path) -> list[Path]:
    """``out`` for a single run; ``<stem>.<label>.<suffix>`` beside it for each of several runs."""
    if len(runs) == 1:
        return [out]
    names = [f"{out.stem}.{slug(r.label)}{out.suffix}" for r in runs]
    if len(set(names)) != len(names):
        raise InputError("several runs would write the same file; filter them first", file=str(out))
    return [out.with_name(n) for n in names]


def slug(text: str) -> str:
    """A file-name-safe form of a run label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "run"


def write_runs(runs: Sequence[ImportedRun], out: str | Path) -> list[tuple[Path, int]]:
    """Write each run as a canonical ``.jsonl`` or ``.parquet`` score table; returns ``(path, rows)`` pairs.

    One run goes to ``out``; several go to one file each beside it (see :func:`output_paths`). Every file is
    written whole or not at all.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".parquet"):
        raise InputError("import writes .jsonl or .parquet", file=str(out))
    if not runs:
        raise InputError("nothing to import")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for run, path in zip(runs, output_paths(runs, out)):
        if not run.rows:
            raise InputError(f"run {run.label!r} holds no scored queries", file=run.source)
        records = canonical_records(run)
        write_table(path, records)
        written.append((path, len(records)))
    return written


__all__ = ["ImportedRow", "ImportedRun", "canonical_records", "counts_row", "exact_row", "write_runs"]
