"""Importing garak reports (``*.report.jsonl``) as rarecast score tables, one run per probe and detector.

garak is never imported (its dependency pins clash with rarecast's); its report is plain JSON lines. The
lines used: ``start_run setup`` (target model and run settings), ``init`` (garak version) and ``attempt``
entries with ``status`` 2 (evaluated: every output carries each detector's score in
``detector_results[detector][i]``). An attempt is one query (its prompt, id ``seq`` within the probe); its
``successes`` are the outputs whose detector score is at or above the threshold (garak's own rule: a score
below ``eval_threshold`` passes), its ``trials`` the outputs that were generated and scored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rarecast.errors import InputError
from rarecast.files import read_rows
from rarecast.integrations import ImportedRun, counts_row

#: garak marks an attempt whose outputs have been through the detectors with status 2
EVALUATED = 2
#: run settings from the setup line that change what an attempt's counts mean
_DECODING_KEYS = ("run.generations", "run.seed", "run.deprefix", "run.system_prompt")


def read_garak_report(
    path: str | Path, *, threshold: float = 0.5, probe: str | None = None, detector: str | None = None
) -> list[ImportedRun]:
    """One run per (probe, detector) in the report, optionally only ``probe`` / ``detector``.

    Raises :class:`~rarecast.errors.InputError` naming the file (and line) for bad JSON, a file that is not a
    garak report, a report without evaluated attempts, or a filter that matches nothing.
    """
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", file=file)
    setup, version, attempts = _scan(p)
    counts: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for line, rec in attempts:
        for det, scores in (rec.get("detector_results") or {}).items():
            hits, trials = _count(scores, threshold, file, line)
            cell = counts[(rec["probe_classname"], det)][str(rec.get("seq", line))]
            cell[0] += hits
            cell[1] += trials
    selected = {k: v for k, v in counts.items() if probe in (None, k[0]) and detector in (None, k[1])}
    if not selected:
        found = ", ".join(f"{pr} / {de}" for pr, de in sorted(counts)) or "none"
        raise InputError(
            f"no evaluated attempts for probe={probe!r}, detector={detector!r} (found: {found})", file=file
        )
    return [_run(setup, version, pr, de, cells, threshold, file) for (pr, de), cells in sorted(selected.items())]


def _scan(path: Path) -> tuple[dict[str, Any], str, list[tuple[int, dict]]]:
    """The setup line, the garak version and the evaluated attempts, checking that this is a garak report."""
    file = str(path)
    setup: dict[str, Any] | None = None
    version = "unknown"
    attempts = []
    for line, rec in _rows(path):
        kind = rec.get("entry_type")
        if kind is None:
            raise InputError("not a garak report (a line without 'entry_type')", file=file, row=line)
        if kind == "start_run setup":
            setup = rec
        elif kind == "init":
            version = str(rec.get("garak_version", version))
        elif kind == "attempt" and rec.get("status") == EVALUATED:
            if "probe_classname" not in rec:
                raise InputError("attempt without 'probe_classname'", file=file, row=line)
            attempts.append((line, rec))
    if setup is None:
        raise InputError("not a garak report (no 'start_run setup' line)", file=file)
    if not attempts:
        raise InputError("holds no evaluated attempts (status 2); was the run cut short before detection?", file=file)
    return setup, version, attempts


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise InputError("a garak report is a .jsonl file", file=str(path))
    return read_rows(path)


def _count(scores: Any, threshold: float, file: str, line: int) -> tuple[int, int]:
    """Hits and trials among one detector's per-output scores; None marks an output that was not produced."""
    if not isinstance(scores, list):
        raise InputError("detector_results values must be lists of scores", file=file, row=line)
    values = [s for s in scores if s is not None]
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in values):
        raise InputError("a detector score is not a number", file=file, row=line)
    return sum(s >= threshold for s in values), len(values)


def _run(
    setup: dict, version: str, probe: str, detector: str, cells: dict[str, list[int]], threshold: float, file: str
) -> ImportedRun:
    parts = (
        setup.get("plugins.target_type") or setup.get("plugins.model_type"),
        setup.get("plugins.target_name") or setup.get("plugins.model_name"),
    )
    target = ":".join(str(p) for p in parts if p) or "unknown"
    run = ImportedRun(
        label=f"{probe}.{detector}",
        model=target,
        revision="unknown",
        behavior=f"garak:{probe}/{detector}",
        behavior_spec={"source": "garak", "probe": probe, "detector": detector, "threshold": threshold},
        decoding={**{k.split(".", 1)[1]: setup[k] for k in _DECODING_KEYS if k in setup}, "garak_version": version},
        source=f"garak:{file}",
    )
    run.rows = [
        counts_row(qid, s, t, file=file, where=f"{probe} attempt {qid}") for qid, (s, t) in cells.items() if t > 0
    ]
    return run


__all__ = ["read_garak_report"]
