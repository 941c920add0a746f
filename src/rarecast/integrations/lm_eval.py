"""Importing lm-evaluation-harness samples (``samples_<task>_<date>.jsonl``, written with ``--log_samples``)
as exact log-probabilities.

lm-eval is never imported; its sample files are JSON lines with ``doc_id``, ``target``, ``arguments`` (one
``(context, continuation)`` pair per request) and ``filtered_resps`` (one ``(log-likelihood, is_greedy)``
pair per request, written as strings by lm-eval's sanitizer, so the full float repr survives). A
``loglikelihood`` task has one request per doc: its log-likelihood is the query's log p. A
``multiple_choice`` task has one request per option: ``choice`` picks the option whose probability is the
behavior (an index, or ``target`` for the doc's gold answer), renormalized among the options by default.
The model comes from the ``results_*.json`` that lm-eval writes beside the samples, or from ``model``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rarecast.errors import InputError
from rarecast.files import read_rows
from rarecast.integrations import ImportedRun, exact_row

_NAME = re.compile(r"^samples_(?P<task>.+?)(_\d{4}-\d{2}-\d{2}T[\d\-.:]+)?\.jsonl$")


def read_lm_eval_samples(
    paths: Sequence[str | Path], *, choice: str | None = None, renormalize: bool = True, model: str | None = None
) -> list[ImportedRun]:
    """One run per samples file (one task); see the module docstring.

    Raises :class:`~rarecast.errors.InputError` naming the file and line for bad JSON, samples that are not
    log-likelihoods (``generate_until`` tasks), a multiple-choice task without ``choice``, or an option index
    out of range.
    """
    return [_read_one(Path(p), choice, renormalize, model) for p in paths]


def _read_one(path: Path, choice: str | None, renormalize: bool, model: str | None) -> ImportedRun:
    file = str(path)
    if not path.is_file():
        raise InputError("no such file", file=file)
    task = task_name(path)
    header = _results_header(path, task)
    run = ImportedRun(
        label=task,
        model=model or header.get("model", ""),
        revision=header.get("revision", "unknown"),
        behavior=f"lm-eval:{task}" + (f"[{choice}]" if choice is not None else ""),
        behavior_spec={"source": "lm-eval", "task": task, "choice": choice, "renormalize": renormalize},
        decoding={"method": "loglikelihood", **header.get("decoding", {})},
        source=f"lm-eval:{file}",
    )
    if not run.model:
        raise InputError("no results_*.json beside it names the model; give --model", file=file)
    for line, rec in read_rows(path):
        logps = _logliks(rec, file, line)
        run.rows.append(
            exact_row(
                str(rec.get("doc_id", line)),
                _pick(logps, rec, choice, renormalize, file, line),
                file=file,
                where=f"line {line}",
            )
        )
    if not run.rows:
        raise InputError("holds no samples", file=file)
    return run


def task_name(path: Path) -> str:
    """The task in lm-eval's sample file name; the file's stem when the name is not lm-eval's."""
    match = _NAME.match(path.name)
    return match.group("task") if match else path.stem


def _results_header(path: Path, task: str) -> dict[str, Any]:
    """Model, revision and settings from the newest ``results_*.json`` beside ``path`` that covers ``task``."""
    for results in sorted(path.parent.glob("results_*.json"), reverse=True):
        try:
            doc = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, RecursionError):  # RecursionError: nested past json's depth
            continue  # an unrelated or damaged file: the samples still import with --model
        if task not in doc.get("configs", {}) and task not in doc.get("results", {}):
            continue
        config = doc.get("config", {})
        revision = doc.get("model_revision") or doc.get("model_sha") or "unknown"
        return {
            "model": f"{config.get('model', 'lm-eval')}:{doc.get('model_name') or config.get('model_args')}",
            "revision": str(revision) or "unknown",
            "decoding": {k: config[k] for k in ("model_args", "batch_size") if config.get(k) is not None},
        }
    return {}


def _logliks(rec: dict, file: str, line: int) -> list[float]:
    resps = rec.get("filtered_resps")
    if not isinstance(resps, list) or not resps:
        raise InputError("no 'filtered_resps' (is this an lm-eval samples file?)", file=file, row=line)
    out = []
    for r in resps:
        if not isinstance(r, (list, tuple)) or len(r) != 2:
            raise InputError(
                "responses are not (log-likelihood, is_greedy) pairs; only loglikelihood and "
                "multiple_choice tasks hold log-probabilities",
                file=file,
                row=line,
            )
        try:
            out.append(float(r[0]))
        except (TypeError, ValueError):
            raise InputError(f"log-likelihood {str(r[0])[:30]!r} is not a number", file=file, row=line) from None
    return out


def _pick(logps: list[float], rec: dict, choice: str | None, renormalize: bool, file: str, line: int) -> float:
    """The chosen request's log p; among several options, optionally renormalized over them."""
    if len(logps) == 1 and choice is None:
        return logps[0]
    if choice is None:
        raise InputError(
            f"docs have {len(logps)} options; choose one with --choice INDEX or --choice target", file=file, row=line
        )
    index = _option_index(choice, rec, len(logps), file, line)
    if not renormalize:
        return logps[index]
    top = max(logps)
    return logps[index] - (top + math.log(sum(math.exp(v - top) for v in logps)))


def _option_index(choice: str, rec: dict, n: int, file: str, line: int) -> int:
    text = str(rec.get("target")) if choice == "target" else choice
    try:
        index = int(text)
    except ValueError:
        raise InputError(
            f"option {text!r} is not an index (--choice takes 0..{n - 1} or 'target')", file=file, row=line
        ) from None
    if not 0 <= index < n:
        raise InputError(f"option {index} is out of range: the doc has {n} options", file=file, row=line)
    return index


__all__ = ["read_lm_eval_samples", "task_name"]
